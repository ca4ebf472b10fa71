import Glibc

/// Sums the partial outputs of a tensor-parallel layer over the ranks, in place: on return every
/// rank's `values` hold the same sum. Called by each rank's forward pass, in the same order on
/// every rank (o then down, layer by layer).
public protocol PartialSumReducer: AnyObject {
    func sumOverRanks(_ values: UnsafeMutablePointer<Float>, count: Int)
}

/// Ranks simulated by threads of one process: an all-reduce through shared memory, so that the
/// tensor-parallel sharding can be run and tested on the CPU backend without any GPU. Each rank
/// runs its own `LlamaCPUModel` on its own thread with `member(rank)` as its `partialSums`.
///
/// Every rank adds the partials in rank order, so all ranks get bit-identical sums (their
/// replicated residual streams never drift apart).
public final class HostRankGroup: @unchecked Sendable {
    // @unchecked: `partials` is written by rank r only before the first barrier of a round and
    // read by all only between the barriers; the barrier orders the accesses.
    public let ranks: Int
    private var partials: [UnsafeMutablePointer<Float>?]
    private var barrier = pthread_barrier_t()

    public init(ranks: Int) {
        precondition(ranks >= 1, "HostRankGroup: at least one rank")
        self.ranks = ranks
        partials = [UnsafeMutablePointer<Float>?](repeating: nil, count: ranks)
        pthread_barrier_init(&barrier, nil, UInt32(ranks))
    }

    deinit { pthread_barrier_destroy(&barrier) }

    /// The reducer rank `rank` passes to its model.
    public func member(_ rank: Int) -> any PartialSumReducer {
        precondition((0..<ranks).contains(rank), "HostRankGroup: rank \(rank) of \(ranks)")
        return Member(group: self, rank: rank)
    }

    private final class Member: PartialSumReducer {
        let group: HostRankGroup
        let rank: Int
        /// The sum, kept until every rank has read all partials.
        var sum: [Float] = []

        init(group: HostRankGroup, rank: Int) {
            self.group = group
            self.rank = rank
        }

        func sumOverRanks(_ values: UnsafeMutablePointer<Float>, count: Int) {
            group.partials[rank] = values
            pthread_barrier_wait(&group.barrier)
            if sum.count < count { sum = [Float](repeating: 0, count: count) }
            sum.withUnsafeMutableBufferPointer { total in
                let t = total.baseAddress!
                t.update(from: group.partials[0]!, count: count)
                for r in 1..<group.ranks { CPUKernels.add(group.partials[r]!, into: t, count: count) }
            }
            // Nobody overwrites its partial until everyone has read them all.
            pthread_barrier_wait(&group.barrier)
            sum.withUnsafeBufferPointer { values.update(from: $0.baseAddress!, count: count) }
        }
    }
}
