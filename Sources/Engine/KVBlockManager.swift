/// The block tables of the engine's sequences over one `BlockPool`: finding a sequence's cached
/// prefix when it is admitted, growing its table as it runs, naming its blocks as they fill (so
/// that later requests can share them) and freeing them.
struct KVBlockManager {
    let blockSize: Int
    let prefixCaching: Bool
    private(set) var pool: BlockPool

    init(blockSize: Int, blockCount: Int, prefixCaching: Bool) {
        precondition(blockSize > 0, "KVBlockManager: block size must be positive")
        self.blockSize = blockSize
        self.prefixCaching = prefixCaching
        pool = BlockPool(blockCount: blockCount)
    }

    /// Blocks that hold `positions` positions.
    func blocksNeeded(positions: Int) -> Int { (positions + blockSize - 1) / blockSize }

    /// The cached blocks of the longest prefix of `sequence` that the cache holds, whole blocks only.
    /// At most `tokens.count - 1` tokens are taken from the cache: the last one must run to give the
    /// logits of the next token, so a prompt that is cached to its end recomputes its last block (as
    /// vLLM does; blocks are never written by two sequences).
    func cachedPrefix(of sequence: SequenceState) -> [Int32] {
        guard prefixCaching else { return [] }
        let candidates = (sequence.tokens.count - 1) / blockSize
        var blocks: [Int32] = []
        while blocks.count < candidates, let block = pool.cachedBlock(for: hash(of: sequence, block: blocks.count)) {
            blocks.append(block)
        }
        return blocks
    }

    /// Gives a sequence with no blocks the cached prefix `cached` (from `cachedPrefix(of:)`) and fresh
    /// blocks up to `positions`; false, changing nothing, when there are not enough free blocks.
    mutating func admit(_ sequence: SequenceState, cached: [Int32], positions: Int) -> Bool {
        precondition(sequence.blockTable.isEmpty, "KVBlockManager: sequence \(sequence.id) already holds blocks")
        let fresh = max(0, blocksNeeded(positions: positions) - cached.count)
        // Reviving a free cached block takes it out of the free blocks too.
        let revived = cached.reduce(0) { $0 + (pool.isFree($1) ? 1 : 0) }
        guard pool.freeBlockCount - revived >= fresh else { return false }
        for block in cached { pool.acquire(block) }
        sequence.blockTable = cached
        sequence.registeredBlocks = cached.count
        return grow(sequence, positions: positions)
    }

    /// Adds fresh blocks until the table holds `positions`; false, changing nothing, when there are
    /// not enough free blocks.
    mutating func grow(_ sequence: SequenceState, positions: Int) -> Bool {
        let missing = blocksNeeded(positions: positions) - sequence.blockTable.count
        guard missing > 0 else { return true }
        guard pool.freeBlockCount >= missing else { return false }
        for _ in 0..<missing {
            // Cannot fail: the free count was checked.
            sequence.blockTable.append(pool.allocate()!)
        }
        return true
    }

    /// Names every block of `sequence` that is now full of computed tokens, so that later requests
    /// with the same prefix can share it.
    mutating func registerComputedBlocks(of sequence: SequenceState) {
        guard prefixCaching else { return }
        let full = min(sequence.computedCount / blockSize, sequence.blockTable.count)
        while sequence.registeredBlocks < full {
            let i = sequence.registeredBlocks
            pool.register(sequence.blockTable[i], as: hash(of: sequence, block: i))
            sequence.registeredBlocks += 1
        }
    }

    /// Releases every block of `sequence`, last block first: its tail blocks are then evicted before
    /// its head, which other prompts are likelier to share.
    mutating func free(_ sequence: SequenceState) {
        for block in sequence.blockTable.reversed() { pool.release(block) }
        sequence.blockTable.removeAll()
        sequence.registeredBlocks = 0
    }

    /// The hash of full block `index` of `sequence` (its tokens must reach the block's end).
    private func hash(of sequence: SequenceState, block index: Int) -> BlockHash {
        while sequence.blockHashes.count <= index {
            let i = sequence.blockHashes.count
            let parent = i == 0 ? BlockHash.rootParent : sequence.blockHashes[i - 1].value
            sequence.blockHashes.append(BlockHash(parent: parent, tokens: sequence.tokens[(i * blockSize)..<((i + 1) * blockSize)]))
        }
        return sequence.blockHashes[index]
    }
}
