import CUDA
import Dispatch
import Engine
import Kernels
import Model

/// Runs one model over several GPUs of one machine for the engine: Megatron-style tensor
/// parallelism (`TensorParallelShard`), one `GPUModelRunner` per GPU on its shard of the weights,
/// the row-parallel outputs summed by NCCL all-reduces inside each rank's step.
///
/// Every step runs on all ranks at once, each from its own thread (rank 0 on the caller's): the
/// ranks stage the same step, replay their own CUDA graphs (which contain the all-reduces) or run
/// eagerly, and rank 0 alone computes the LM head and returns logits or tokens.
public final class TensorParallelRunner: ModelRunner {
    /// The whole model's config (each rank runs `shard.sharded(config)`).
    public let config: ModelConfig
    public let ranks: [GPUModelRunner]
    public let group: NCCLGroup
    public var kvBlockSize: Int { ranks[0].kvBlockSize }
    /// The fewest blocks any rank has room for.
    public let kvBlockCount: Int
    public var maxStepTokens: Int { ranks[0].maxStepTokens }
    public var maxStepSequences: Int { ranks[0].maxStepSequences }
    private let workers: RankThreads

    /// - Parameters:
    ///   - config: the whole model's config.
    ///   - libraries: one kernel library per GPU, in rank order (distinct devices).
    ///   - search: where cuBLASLt is found (a handle per GPU).
    ///   - weights: builds rank r's weights on its context (from `ShardedWeightSource`, a sharded
    ///     checkpoint, or synthetic weights of the shard's config).
    public init(
        config: ModelConfig, libraries: [KernelLibrary], nccl: NCCL, search: LibrarySearch, options: GPURunnerOptions = GPURunnerOptions(),
        weights: (TensorParallelShard, CUDAContext) throws -> GPUModelWeights
    ) throws {
        let count = libraries.count
        try TensorParallelShard.check(config, ranks: count)
        self.config = config
        let group = try NCCLGroup(nccl: nccl, contexts: libraries.map(\.context))
        self.group = group
        ranks = try libraries.enumerated().map { rank, library in
            let shard = try TensorParallelShard(rank: rank, of: count)
            let w = try weights(shard, library.context)
            guard w.config == (try shard.sharded(config)) else {
                throw GPUBackendError.badWeights("rank \(rank)'s weights are not \(shard) of the model")
            }
            return try GPUModelRunner(weights: w, options: options, library: library, blas: CuBLASLt.load(search: search, context: library.context),
                                      tensorParallelRank: .init(group: group, rank: rank))
        }
        kvBlockCount = ranks.map(\.kvBlockCount).min()!
        workers = RankThreads(count: count)
    }

    public var usesGraphs: Bool {
        get { ranks[0].usesGraphs }
        set { for rank in ranks { rank.usesGraphs = newValue } }
    }

    public func execute(_ step: [StepSequence], logits: inout [Float]) throws {
        // Swapped in and out, not copied: the logits may be hundreds of MB.
        nonisolated(unsafe) var rank0: [Float] = []
        swap(&rank0, &logits)
        defer { swap(&rank0, &logits) }
        try workers.run { [ranks] r in
            if r == 0 {
                try ranks[0].execute(step, logits: &rank0)
            } else {
                var none: [Float] = []
                try ranks[r].execute(step, logits: &none)
            }
        }
    }

    public func executeGreedy(_ step: [StepSequence], tokens: inout [Int32]) throws {
        nonisolated(unsafe) var rank0: [Int32] = []
        try workers.run { [ranks] r in
            var picked: [Int32] = []
            try ranks[r].executeGreedy(step, tokens: &picked)
            if r == 0 { rank0 = picked }
        }
        tokens = rank0
    }

    public func fillKVCache(byte: UInt8) throws {
        for rank in ranks { try rank.fillKVCache(byte: byte) }
    }
}

/// Runs a job on every rank at once: rank 0 on the calling thread, each other rank on a serial
/// queue of its own (its own thread), so that every rank's host work (staging, launches, NCCL
/// calls, which may wait for their peers) goes ahead together: a rank queued behind another
/// could deadlock an eager step's collectives.
public final class RankThreads: @unchecked Sendable {
    // @unchecked: rank r writes only `errors[r]`, and the caller reads them after the group wait.
    public let count: Int
    private let queues: [DispatchQueue]
    private let errors: UnsafeMutableBufferPointer<(any Error)?>

    public init(count: Int) {
        self.count = count
        queues = (0..<count).map { DispatchQueue(label: "comet.tensor-parallel.rank\($0)") }
        errors = .allocate(capacity: count)
        errors.initialize(repeating: nil)
    }

    deinit {
        errors.deinitialize()
        errors.deallocate()
    }

    /// Runs `body(r)` for every rank; rethrows the first error in rank order after all finished.
    public func run(_ body: @escaping (Int) throws -> Void) throws {
        nonisolated(unsafe) let body = body
        nonisolated(unsafe) let errors = errors
        let group = DispatchGroup()
        for r in 1..<count {
            queues[r].async(group: group) {
                do { try body(r) } catch { errors[r] = error }
            }
        }
        do { try body(0) } catch { errors[0] = error }
        group.wait()
        defer { for r in 0..<count { errors[r] = nil } }
        if let error = errors.compactMap({ $0 }).first { throw error }
    }
}
