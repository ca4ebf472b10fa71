/// Where one sequence's keys and values live, as the forward pass reads and writes them: a contiguous
/// `KVCache`, or a block table into a `PagedKVStore` (`PagedKVSequence`).
///
/// The forward pass is generic over it (and specialized for each conformer), so the contiguous path
/// costs nothing extra for the paged one existing.
protocol KVStorage {
    /// The keys of `layer` at `position`: [kvDim], writable.
    func keys(layer: Int, position: Int) -> UnsafeMutablePointer<Float>
    /// The values of `layer` at `position`: [kvDim], writable.
    func values(layer: Int, position: Int) -> UnsafeMutablePointer<Float>
}

extension KVCache: KVStorage {}
