/// A BPE merge table over token ids, and the merge loop both BPE tokenizers share.
///
/// The loop is the one of Hugging Face `tokenizers` and SentencePiece: repeatedly merge the adjacent
/// pair with the best (lowest) rank, the leftmost one on ties, until no pair merges. It keeps the
/// symbols in a linked list and candidate pairs in a binary heap, so a word of n symbols costs
/// O(n log n), not O(n^2); all storage lives in a `BPEScratch` that is reused across words.
struct BPEMerges: Sendable {
    struct Merge: Sendable {
        /// Lower merges first.
        var rank: Int32
        /// The token the pair becomes.
        var result: Int32
    }

    private var table: [UInt64: Merge] = [:]

    var count: Int { table.count }

    /// Adds the merge `left + right -> result`; the better rank wins if the pair is already present.
    mutating func add(left: Int32, right: Int32, result: Int32, rank: Int32) {
        let key = Self.key(left, right)
        if let existing = table[key], existing.rank <= rank { return }
        table[key] = Merge(rank: rank, result: result)
    }

    func merge(_ left: Int32, _ right: Int32) -> Merge? {
        table[Self.key(left, right)]
    }

    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// Merges `symbols` (token ids; negative ids never merge) in place until no pair merges.
    func apply(to symbols: inout [Int32], scratch: inout BPEScratch) {
        let n = symbols.count
        guard n >= 2 else { return }
        scratch.reset(count: n)
        for i in 0..<(n - 1) { pushPair(at: i, symbols[i], symbols[i + 1], into: &scratch) }

        while let top = scratch.popBest() {
            let left = Int(top.position)
            let right = Int(scratch.next[left])
            // Skip entries made stale by an earlier merge: a merge always changes the id at a position
            // (the result is a new, longer token), so unchanged ids mean the pair is still there.
            guard right >= 0, symbols[left] == top.left, symbols[right] == top.right,
                  let merge = merge(top.left, top.right) else { continue }
            symbols[left] = merge.result
            symbols[right] = -1
            let after = scratch.next[right]
            scratch.next[left] = after
            if after >= 0 { scratch.previous[Int(after)] = Int32(left) }
            let before = scratch.previous[left]
            if before >= 0 { pushPair(at: Int(before), symbols[Int(before)], symbols[left], into: &scratch) }
            if after >= 0 { pushPair(at: left, symbols[left], symbols[Int(after)], into: &scratch) }
        }

        // Compact the surviving symbols, following the list from the head (position 0 never dies).
        var write = 0
        var i = 0
        while i >= 0 {
            symbols[write] = symbols[i]
            write += 1
            i = Int(scratch.next[i])
        }
        symbols.removeLast(n - write)
    }

    private func pushPair(at position: Int, _ left: Int32, _ right: Int32, into scratch: inout BPEScratch) {
        guard left >= 0, right >= 0, let merge = merge(left, right) else { return }
        scratch.push(.init(rank: merge.rank, position: Int32(position), left: left, right: right))
    }
}

/// Reusable storage of `BPEMerges.apply`: the symbol list links and the heap of candidate pairs.
struct BPEScratch {
    struct Candidate {
        var rank: Int32
        var position: Int32
        var left: Int32
        var right: Int32

        /// Heap order: lower rank first, then the leftmost position.
        func before(_ other: Candidate) -> Bool {
            rank != other.rank ? rank < other.rank : position < other.position
        }
    }

    fileprivate var next: [Int32] = []
    fileprivate var previous: [Int32] = []
    private var heap: [Candidate] = []

    init() {}

    fileprivate mutating func reset(count n: Int) {
        next.removeAll(keepingCapacity: true)
        previous.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        for i in 0..<n {
            next.append(i + 1 < n ? Int32(i + 1) : -1)
            previous.append(Int32(i - 1))
        }
    }

    fileprivate mutating func push(_ candidate: Candidate) {
        heap.append(candidate)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].before(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    fileprivate mutating func popBest() -> Candidate? {
        guard let last = heap.popLast() else { return nil }
        guard !heap.isEmpty else { return last }
        let best = heap[0]
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].before(heap[smallest]) { smallest = left }
            if right < heap.count && heap[right].before(heap[smallest]) { smallest = right }
            if smallest == parent { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return best
    }
}
