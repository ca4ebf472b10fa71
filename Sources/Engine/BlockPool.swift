/// The KV cache's blocks as the engine hands them out: reference counts, the prefix-cache table
/// (`BlockHash` of a full block -> the block holding it) and the free blocks. Workers only ever see
/// block ids.
///
/// A block is in use while its reference count is above zero (one reference per sequence whose block
/// table holds it). When the last reference goes, a block that holds a registered (full, hashed) block
/// of tokens keeps its contents and its table entry and waits on the LRU list: a later request with
/// the same prefix revives it, or, when a fresh block is needed and no uncached one is free, it is
/// evicted, least recently freed first. A block in use is never handed out.
struct BlockPool {
    let blockCount: Int
    private var referenceCounts: [Int32]
    /// The registered hash of each block (nil: not in the table).
    private var hashes: [BlockHash?]
    private var table: [BlockHash: Int32] = [:]
    /// Free blocks without cached contents: taken first.
    private var uncached: [Int32]
    /// Free blocks with cached contents, least recently freed first.
    private var cached: BlockLRUList

    init(blockCount: Int) {
        precondition(blockCount > 0, "BlockPool: no blocks")
        self.blockCount = blockCount
        referenceCounts = [Int32](repeating: 0, count: blockCount)
        hashes = [BlockHash?](repeating: nil, count: blockCount)
        // Reversed, so that popping hands out block 0 first (easier to read in logs and tests).
        uncached = (0..<Int32(blockCount)).reversed()
        cached = BlockLRUList(blockCount: blockCount)
    }

    /// Blocks with no reference: uncached ones and cached ones that may be evicted.
    var freeBlockCount: Int { uncached.count + cached.count }
    var blocksInUse: Int { blockCount - freeBlockCount }
    /// Blocks whose contents the table names (in use or free).
    var cachedBlockCount: Int { table.count }

    func referenceCount(_ block: Int32) -> Int { Int(referenceCounts[Int(block)]) }
    func isFree(_ block: Int32) -> Bool { referenceCounts[Int(block)] == 0 }
    /// The cached-free blocks, oldest first (for tests).
    var evictionOrder: [Int32] { cached.blocks }

    /// A block with no other reference (count 1), or nil when none is free. Takes an uncached block
    /// when there is one, else evicts the least recently freed cached block (dropping its table entry).
    mutating func allocate() -> Int32? {
        let block: Int32
        if let fresh = uncached.popLast() {
            block = fresh
        } else if let oldest = cached.removeOldest() {
            block = oldest
            if let hash = hashes[Int(block)] {
                table[hash] = nil
                hashes[Int(block)] = nil
            }
        } else {
            return nil
        }
        precondition(referenceCounts[Int(block)] == 0, "BlockPool: free block \(block) has references")
        referenceCounts[Int(block)] = 1
        return block
    }

    /// The block registered under `hash`, in use or free, if any.
    func cachedBlock(for hash: BlockHash) -> Int32? { table[hash] }

    /// Adds a reference to `block` (sharing a cached prefix); a free block leaves the LRU list.
    mutating func acquire(_ block: Int32) {
        if referenceCounts[Int(block)] == 0 { cached.remove(block) }
        referenceCounts[Int(block)] += 1
    }

    /// Drops a reference; the last one frees the block (keeping its cached contents if it has any).
    mutating func release(_ block: Int32) {
        precondition(referenceCounts[Int(block)] > 0, "BlockPool: block \(block) released more often than taken")
        referenceCounts[Int(block)] -= 1
        guard referenceCounts[Int(block)] == 0 else { return }
        if hashes[Int(block)] != nil { cached.append(block) } else { uncached.append(block) }
    }

    /// Records that `block` (in use, its positions all written) holds the full block of tokens `hash`
    /// names. When another block already holds the same contents, the table keeps that one and
    /// `block` stays unnamed (it is freed as an uncached block).
    mutating func register(_ block: Int32, as hash: BlockHash) {
        precondition(referenceCounts[Int(block)] > 0, "BlockPool: registering free block \(block)")
        guard hashes[Int(block)] == nil, table[hash] == nil else { return }
        table[hash] = block
        hashes[Int(block)] = hash
    }
}
