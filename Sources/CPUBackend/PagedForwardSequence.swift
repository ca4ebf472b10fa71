/// One sequence of a batched forward call over a `PagedKVStore`: `tokens` at positions
/// `firstPosition ..< firstPosition + tokens.count`, whose keys and values go to the blocks of
/// `blockTable` (position p in block `blockTable[p / blockSize]`). Positions before `firstPosition`
/// must already be in those blocks.
public struct PagedForwardSequence: Sendable {
    public var tokens: ArraySlice<Int32>
    public var firstPosition: Int
    public var blockTable: [Int32]
    public var logits: LogitsSelection

    public init(tokens: ArraySlice<Int32>, firstPosition: Int, blockTable: [Int32], logits: LogitsSelection) {
        self.tokens = tokens
        self.firstPosition = firstPosition
        self.blockTable = blockTable
        self.logits = logits
    }
}

extension LlamaCPUModel {
    /// Runs several sequences in one call: their rows go through every linear together (one pass
    /// over the weights for the whole batch), attention reads each sequence's own blocks. Writes
    /// the logits rows the sequences ask for, in order (row by row of each `.all`, one for `.last`,
    /// none for `.skip`), into `logits`, resized when its count differs.
    ///
    /// Two sequences may share blocks they only read (a common prefix), never a block either writes.
    public func forward(_ sequences: [PagedForwardSequence], kv: PagedKVStore, logits: inout [Float]) throws {
        guard !sequences.isEmpty else { throw CPUBackendError.unsupported("a forward call with no sequences") }
        guard kv.layerCount == config.layerCount, kv.kvDim == config.kvHeadCount * config.headDim else {
            throw CPUBackendError.cacheMismatch(
                "\(kv.layerCount) layers of width \(kv.kvDim), the model has \(config.layerCount) of width \(config.kvHeadCount * config.headDim)")
        }
        var tables: [Int32] = []
        var tableOffsets: [Int] = []
        for sequence in sequences {
            guard !sequence.tokens.isEmpty else { throw CPUBackendError.unsupported("a sequence with no tokens") }
            guard sequence.firstPosition >= 0 else { throw CPUBackendError.unsupported("negative position \(sequence.firstPosition)") }
            let end = sequence.firstPosition + sequence.tokens.count
            let blocksNeeded = (end + kv.blockSize - 1) / kv.blockSize
            guard sequence.blockTable.count >= blocksNeeded else {
                throw CPUBackendError.contextFull(needed: end, capacity: sequence.blockTable.count * kv.blockSize)
            }
            for block in sequence.blockTable.prefix(blocksNeeded) where block < 0 || Int(block) >= kv.blockCount {
                throw CPUBackendError.cacheMismatch("block id \(block) is outside the store's 0..<\(kv.blockCount)")
            }
            try checkTokens(sequence.tokens)
            tableOffsets.append(tables.count)
            tables.append(contentsOf: sequence.blockTable.prefix(blocksNeeded))
        }
        tables.withUnsafeBufferPointer { tables in
            let segments = sequences.indices.map { i in
                ForwardSegment(storage: kv.sequence(table: tables.baseAddress! + tableOffsets[i]),
                               firstPosition: sequences[i].firstPosition, count: sequences[i].tokens.count,
                               logits: sequences[i].logits)
            }
            run(segments, token: { s, offset in sequences[s].tokens[sequences[s].tokens.startIndex + offset] }, logits: &logits)
        }
    }
}
