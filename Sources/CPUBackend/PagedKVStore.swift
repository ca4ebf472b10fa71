import Model

/// A KV cache cut into blocks of `blockSize` positions that many sequences share, each through its own
/// block table (position p of a sequence lives in block `table[p / blockSize]`, slot `p % blockSize`):
/// what the serving engine's block manager hands out. fp32, keys and values apart.
///
///     keys, values: [blocks, layers, blockSize, kvDim]
///
/// A block holds every layer of its positions, so that a block id alone names a sequence's share of
/// the cache (as the engine sees it).
public final class PagedKVStore: @unchecked Sendable {
    // @unchecked: one forward call at a time writes the store; the engine never lets two sequences
    // write the same block.

    /// Positions per block (a power of two, so that finding a slot is a shift and a mask).
    public let blockSize: Int
    public let blockCount: Int
    let layerCount: Int
    /// kvHeads * headDim: the width of one position's keys (and values) in one layer.
    let kvDim: Int
    let keys: FloatBuffer
    let values: FloatBuffer

    /// A store of `blockCount` blocks for a model shaped like `config`
    /// (2 * blocks * blockSize * layers * kvDim Floats: SmolLM2 takes 46 KB per position).
    public init(config: ModelConfig, blockSize: Int, blockCount: Int) throws {
        guard blockSize > 0, blockSize & (blockSize - 1) == 0 else {
            throw CPUBackendError.unsupported("a KV block size of \(blockSize) (it must be a power of two)")
        }
        guard blockCount > 0 else { throw CPUBackendError.unsupported("a KV cache of \(blockCount) blocks") }
        self.blockSize = blockSize
        self.blockCount = blockCount
        layerCount = config.layerCount
        kvDim = config.kvHeadCount * config.headDim
        keys = FloatBuffer(count: blockCount * layerCount * blockSize * kvDim)
        values = FloatBuffer(count: blockCount * layerCount * blockSize * kvDim)
    }

    /// Bytes of one block (keys and values, every layer).
    public var bytesPerBlock: Int { 2 * layerCount * blockSize * kvDim * MemoryLayout<Float>.stride }

    /// The view of one sequence whose block table is `table` (valid while `table`'s memory is).
    func sequence(table: UnsafePointer<Int32>) -> PagedKVSequence {
        PagedKVSequence(
            keys: keys.pointer, values: values.pointer, table: table, slotShift: blockSize.trailingZeroBitCount,
            kvDim: kvDim, layerStride: blockSize * kvDim, blockStride: layerCount * blockSize * kvDim)
    }
}

/// One sequence's keys and values in a `PagedKVStore`, through its block table. The caller has
/// checked that every position it touches has a block in the table and that the block ids are valid.
struct PagedKVSequence: KVStorage {
    let keys: UnsafeMutablePointer<Float>
    let values: UnsafeMutablePointer<Float>
    let table: UnsafePointer<Int32>
    /// log2(blockSize)
    let slotShift: Int
    let kvDim: Int
    /// Floats between layers within a block: blockSize * kvDim.
    let layerStride: Int
    /// Floats between blocks: layers * blockSize * kvDim.
    let blockStride: Int

    @inline(__always)
    private func offset(layer: Int, position: Int) -> Int {
        let block = Int(table[position &>> slotShift]), slot = position & ((1 &<< slotShift) &- 1)
        return block * blockStride + layer * layerStride + slot * kvDim
    }

    @inline(__always)
    func keys(layer: Int, position: Int) -> UnsafeMutablePointer<Float> { keys + offset(layer: layer, position: position) }

    @inline(__always)
    func values(layer: Int, position: Int) -> UnsafeMutablePointer<Float> { values + offset(layer: layer, position: position) }
}
