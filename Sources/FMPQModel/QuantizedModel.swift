import CPUBackend
import Model
import Quant

/// How a quantized checkpoint is evaluated: which activations are quantized and whether K/V
/// go through KV4. The accuracy table's rows differ only in these and in the checkpoint.
public struct QuantizedEvaluation: Sendable, Equatable {
    public var activations: QuantizedLinear.Activations
    public var kv4: Bool
    /// With `kv4`: keys Hadamard rotated per head before KV4 (`KVCacheSettings.keyRotation`).
    public var keyRotation: Bool
    public init(activations: QuantizedLinear.Activations = .fmpq, kv4: Bool, keyRotation: Bool = false) {
        self.activations = activations
        self.kv4 = kv4
        self.keyRotation = keyRotation
    }

    /// How a loaded checkpoint asks to be run: its own KV cache format.
    public init(_ checkpoint: QuantizedCheckpoint, activations: QuantizedLinear.Activations = .fmpq) {
        self.init(activations: activations, kv4: checkpoint.kvCache.bits == 4, keyRotation: checkpoint.kvCache.rotatesKeys)
    }
}

/// `ForwardHooks` that run a `LlamaCPUModel` as FMPQ would: every linear from the checkpoint's
/// INT4 weights on permuted, per-(token, block) quantized activations, and K/V through KV4
/// (asymmetric UINT4 per (token, head), quantized then dequantized where the cache stores them).
public final class QuantizedModelHooks: ForwardHooks {
    /// [layer][slot.rawValue]
    public let linears: [[QuantizedLinear]]
    public let evaluation: QuantizedEvaluation
    private unowned let model: LlamaCPUModel
    private var prepared: [Float] = []
    private var kv4: KV4RoundTrip

    /// Builds the hooks for `model` from `checkpoint` (every linear must be there, shaped as the
    /// model's) and installs them as `model.hooks`.
    @discardableResult
    public static func install(
        on model: LlamaCPUModel, checkpoint: QuantizedCheckpoint, evaluation: QuantizedEvaluation
    ) throws -> QuantizedModelHooks {
        let hooks = try QuantizedModelHooks(model: model, checkpoint: checkpoint, evaluation: evaluation)
        model.hooks = hooks
        return hooks
    }

    init(model: LlamaCPUModel, checkpoint: QuantizedCheckpoint, evaluation: QuantizedEvaluation) throws {
        let expected = ModelQuantizer.configJSON(model.config)
        guard ModelQuantizer.sameConfig(checkpoint.model, expected) else {
            throw QuantError.shapeMismatch("the checkpoint was made for another model config (\(checkpoint.model)), this model is \(expected)")
        }
        // The engine never applies the factors (they are in the weights); a checkpoint whose
        // factors do not fit this model is refused all the same.
        for layer in 0..<model.config.layerCount { _ = try ModelQuantizer.keySmoothing(checkpoint, layer: layer, config: model.config) }
        linears = try (0..<model.config.layerCount).map { layer in
            try LinearSlot.allCases.map { slot in
                let (weights, permutation) = try checkpoint.linear(slot.name(layer: layer))
                let shape = model.linearShape(slot)
                guard weights.layout.inputChannels == shape.inDim, weights.outputs == shape.outDim else {
                    throw QuantError.shapeMismatch("\(slot.name(layer: layer)) is \(weights.outputs) x \(weights.layout.inputChannels), the model needs \(shape.outDim) x \(shape.inDim)")
                }
                return try QuantizedLinear(weights: weights, permutation: permutation)
            }
        }
        if evaluation.kv4, evaluation.keyRotation {
            try ModelQuantizer.checkKeyRotation(model.config)
        }
        self.model = model
        self.evaluation = evaluation
        kv4 = KV4RoundTrip(kvHeads: model.config.kvHeadCount, headDim: model.config.headDim)
    }

    public func linear(
        layer: Int, slot: LinearSlot, x: UnsafePointer<Float>, tokens: Int, inDim: Int, outDim: Int,
        firstPosition: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool
    ) -> Bool {
        let q = linears[layer][slot.rawValue]
        let kp = q.layout.paddedChannels
        if prepared.count < tokens * kp { prepared = [Float](repeating: 0, count: tokens * kp) }
        prepared.withUnsafeMutableBufferPointer { xq in
            q.prepare(x, tokens: tokens, activations: evaluation.activations, into: xq.baseAddress!)
            q.weights.withUnsafeBufferPointer { w in
                model.matmul(xq.baseAddress!, tokens: tokens, w.baseAddress!, inDim: kp, outDim: outDim, y, accumulate: accumulate)
            }
        }
        return true
    }

    public func keysValues(layer: Int, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, firstPosition: Int) {
        guard evaluation.kv4 else { return }
        kv4.apply(keys, rowStride: rowStride, tokens: tokens, rotated: evaluation.keyRotation)
        kv4.apply(values, rowStride: rowStride, tokens: tokens)
    }
}
