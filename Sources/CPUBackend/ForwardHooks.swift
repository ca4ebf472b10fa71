/// The linear layers of a llama block, as the CPU forward pass runs them. Projections that read
/// the same input are one fused linear (see `LlamaWeights`), which is also how FMPQ sees them:
/// q, k and v share one input (so one channel permutation), gate and up share another.
public enum LinearSlot: Int, Sendable, CaseIterable {
    /// [q; k; v] · xn: input the attention-normed residual, [tokens, dim].
    case qkv
    /// Wo · attention: input [tokens, heads * headDim].
    case attentionOutput
    /// [gate; up] · xn: input the ffn-normed residual, [tokens, dim].
    case gateUp
    /// Wdown · (silu(gate) * up): input [tokens, ffnDim].
    case down

    /// Whether tensor parallelism splits this linear's inputs (o, down: the ranks' outputs are
    /// partial sums) rather than its outputs (qkv, gate_up).
    public var isRowParallel: Bool { self == .attentionOutput || self == .down }

    /// The kind's short name, as options and manifests spell it: qkv, o, gate_up, down.
    public var kindName: String {
        switch self {
        case .qkv: return "qkv"
        case .attentionOutput: return "o"
        case .gateUp: return "gate_up"
        case .down: return "down"
        }
    }

    /// The slot whose `kindName` is `name`, or nil.
    public init?(kindName name: String) {
        guard let slot = Self.allCases.first(where: { $0.kindName == name }) else { return nil }
        self = slot
    }

    /// The name of the layer's linear in a checkpoint, e.g. "blk.3.ffn_down".
    public func name(layer: Int) -> String {
        switch self {
        case .qkv: return "blk.\(layer).attn_qkv"
        case .attentionOutput: return "blk.\(layer).attn_output"
        case .gateUp: return "blk.\(layer).ffn_gate_up"
        case .down: return "blk.\(layer).ffn_down"
        }
    }
}

/// What a caller may observe or replace in `LlamaCPUModel`'s forward pass: calibration watches
/// every linear's input; a quantized model computes the linears itself and quantizes K and V.
/// Methods are called from the forward pass's thread, one at a time, in layer order. A call always
/// sees rows of one sequence at consecutive positions: in a batched call over several sequences (the
/// engine's CPU runner), each linear is offered once per sequence's rows of the chunk.
public protocol ForwardHooks: AnyObject {
    /// Called before linear `slot` of `layer` with its input `x` ([tokens, inDim], contiguous),
    /// the chunk's first position (token t is at `firstPosition + t`). To replace the linear,
    /// write y = x · Wᵀ ([tokens, outDim], or add it to `y` when `accumulate`) and return true;
    /// return false to let the model run its fp32 weights.
    func linear(
        layer: Int, slot: LinearSlot, x: UnsafePointer<Float>, tokens: Int, inDim: Int, outDim: Int,
        firstPosition: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool
    ) -> Bool

    /// Called after RoPE with each token's keys and values (rows `rowStride` apart, kvHeads *
    /// headDim each; token t at `firstPosition + t`) just before they are written to the KV
    /// cache; may change them in place (KV4 quantizes and dequantizes them there; calibration
    /// records their statistics).
    func keysValues(layer: Int, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, firstPosition: Int)
}

extension ForwardHooks {
    public func keysValues(layer: Int, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, firstPosition: Int) {}
}

extension LlamaCPUModel {
    /// [outDim, inDim]: a copy of the fp32 weights of linear `slot` of `layer` (what the
    /// quantizer rounds), rows as `LinearSlot` describes.
    public func linearWeights(layer: Int, slot: LinearSlot) -> [Float] {
        let buffer = weightBuffer(layer: layer, slot: slot)
        return Array(UnsafeBufferPointer(start: buffer.pointer, count: buffer.count))
    }

    /// (inDim, outDim) of linear `slot`.
    public func linearShape(_ slot: LinearSlot) -> (inDim: Int, outDim: Int) {
        let dim = config.dim, ffn = config.ffnDim
        let qDim = config.headCount * config.headDim, kvDim = config.kvHeadCount * config.headDim
        switch slot {
        case .qkv: return (dim, qDim + 2 * kvDim)
        case .attentionOutput: return (qDim, dim)
        case .gateUp: return (dim, 2 * ffn)
        case .down: return (ffn, dim)
        }
    }

    /// y = x · wᵀ (or y += with `accumulate`) with the backend's fp32 kernel and thread count:
    /// for hooks that bring their own (e.g. dequantized) weights.
    ///
    ///     x: [tokens, inDim], w: [outDim, inDim], y: [tokens, outDim]
    public func matmul(
        _ x: UnsafePointer<Float>, tokens: Int, _ w: UnsafePointer<Float>, inDim: Int, outDim: Int,
        _ y: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        CPUKernels.matmul(x, xStride: inDim, tokens: tokens, w, inDim: inDim, outDim: outDim, y, yStride: outDim,
                          accumulate: accumulate, parallel: parallelLoop)
    }
}
