import Model

/// The keys and values of one sequence, fp32, for every layer: what attention reads at each step.
///
/// The caller owns it and says where each forward call writes (`LlamaCPUModel.forward(_:at:cache:...)`):
/// positions 0..<count hold valid entries; a call at position p < count overwrites from p on (rewinding,
/// e.g. to reuse a shared prompt prefix) and leaves count = p + tokens.
public final class KVCache: @unchecked Sendable {
    // @unchecked: one forward call at a time writes a cache; no two threads write the same entry.

    /// Positions the cache holds.
    public let capacity: Int
    /// Positions 0..<count hold valid keys and values.
    public internal(set) var count = 0

    let layerCount: Int
    /// kvHeads * headDim: the width of one position's keys (and values) in one layer.
    let kvDim: Int
    /// [layers, capacity, kvDim]
    let keys: FloatBuffer
    /// [layers, capacity, kvDim]
    let values: FloatBuffer

    /// A cache for `capacity` positions of a model shaped like `config`
    /// (2 * layers * capacity * kvHeads * headDim Floats: SmolLM2 at 2048 positions is 94 MB).
    public init(config: ModelConfig, capacity: Int) {
        precondition(capacity > 0, "KVCache: capacity must be positive")
        self.capacity = capacity
        layerCount = config.layerCount
        kvDim = config.kvHeadCount * config.headDim
        keys = FloatBuffer(count: layerCount * capacity * kvDim)
        values = FloatBuffer(count: layerCount * capacity * kvDim)
    }

    /// Forgets every entry (the memory is kept).
    public func reset() { count = 0 }

    /// The keys of `layer` at `position`: [kvDim].
    @inline(__always)
    func keys(layer: Int, position: Int) -> UnsafeMutablePointer<Float> {
        keys.pointer + (layer * capacity + position) * kvDim
    }

    /// The values of `layer` at `position`: [kvDim].
    @inline(__always)
    func values(layer: Int, position: Int) -> UnsafeMutablePointer<Float> {
        values.pointer + (layer * capacity + position) * kvDim
    }
}
