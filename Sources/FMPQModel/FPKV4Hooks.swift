import CPUBackend
import Quant

/// The FP model with a KV4 cache, with or without K smoothing: the accuracy table's rows that
/// isolate what KV4 costs and what smoothing recovers, with no weight or activation error.
///
/// The fp32 linears are the model's own, so smoothing cannot be folded into them here; it is
/// applied where the cache sees K instead: k / s is quantized, and the dequantized value
/// multiplied back by s. Since (q·s)·(k̂ of k/s) = q·(s·(k̂ of k/s)), that is the folded model's
/// q·k exactly (up to fp32 rounding), without touching the weights.
public final class FPKV4Hooks: ForwardHooks {
    /// [layer], or nil for plain KV4.
    public let keySmoothing: [KeySmoothing]?
    /// Which of K and V go through KV4 (the other stays fp32): the ablation that shows which costs.
    public let quantizes: (keys: Bool, values: Bool)
    /// Keys Hadamard rotated per head before KV4 (`KVCacheSettings.keyRotation`).
    public let keyRotation: Bool
    private var kv4: KV4RoundTrip

    public init(
        model: LlamaCPUModel, keySmoothing: [KeySmoothing]?, quantizes: (keys: Bool, values: Bool) = (true, true), keyRotation: Bool = false
    ) throws {
        let kvDim = model.config.kvHeadCount * model.config.headDim
        if let keySmoothing {
            guard keySmoothing.count == model.config.layerCount, keySmoothing.allSatisfy({ $0.factors.count == kvDim }) else {
                throw QuantError.shapeMismatch("K smoothing needs \(model.config.layerCount) layers of \(kvDim) factors")
            }
        }
        self.keySmoothing = keySmoothing
        self.quantizes = quantizes
        self.keyRotation = keyRotation
        if keyRotation { try ModelQuantizer.checkKeyRotation(model.config) }
        kv4 = KV4RoundTrip(kvHeads: model.config.kvHeadCount, headDim: model.config.headDim)
    }

    public func linear(
        layer: Int, slot: LinearSlot, x: UnsafePointer<Float>, tokens: Int, inDim: Int, outDim: Int,
        firstPosition: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool
    ) -> Bool { false }

    public func keysValues(layer: Int, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, firstPosition: Int) {
        if quantizes.keys {
            let factors = keySmoothing?[layer].factors
            if let factors { scale(keys, rowStride: rowStride, tokens: tokens, by: factors, dividing: true) }
            kv4.apply(keys, rowStride: rowStride, tokens: tokens, rotated: keyRotation)
            if let factors { scale(keys, rowStride: rowStride, tokens: tokens, by: factors, dividing: false) }
        }
        if quantizes.values { kv4.apply(values, rowStride: rowStride, tokens: tokens) }
    }

    private func scale(_ rows: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, by factors: [Float], dividing: Bool) {
        for t in 0..<tokens {
            for c in factors.indices { rows[t * rowStride + c] = dividing ? rows[t * rowStride + c] / factors[c] : rows[t * rowStride + c] * factors[c] }
        }
    }
}
