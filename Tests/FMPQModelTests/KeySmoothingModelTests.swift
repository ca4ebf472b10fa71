import CPUBackend
import FMPQModel
import Foundation
import Model
import Quant
import Testing

/// Replaces the qkv linear by x·W'ᵀ with K smoothing folded into W' (fp32, the model's own
/// weights), and records the keys the cache would store.
final class FoldedQKV: ForwardHooks {
    let weights: [[Float]]
    var keys: [[Float]]
    private unowned let model: LlamaCPUModel

    init(model: LlamaCPUModel, smoothing: [KeySmoothing]) throws {
        self.model = model
        let (inDim, _) = model.linearShape(.qkv)
        weights = try (0..<model.config.layerCount).map { layer in
            var w = model.linearWeights(layer: layer, slot: .qkv)
            try smoothing[layer].fold(intoQKV: &w, inputs: inDim, heads: model.config.headCount)
            return w
        }
        keys = Array(repeating: [], count: model.config.layerCount)
    }

    func linear(layer: Int, slot: LinearSlot, x: UnsafePointer<Float>, tokens: Int, inDim: Int, outDim: Int,
                firstPosition: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool) -> Bool {
        guard slot == .qkv else { return false }
        weights[layer].withUnsafeBufferPointer { w in
            model.matmul(x, tokens: tokens, w.baseAddress!, inDim: inDim, outDim: outDim, y, accumulate: accumulate)
        }
        return true
    }

    func keysValues(layer: Int, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, firstPosition: Int) {
        let kvDim = model.config.kvHeadCount * model.config.headDim
        for t in 0..<tokens { self.keys[layer] += UnsafeBufferPointer(start: keys + t * rowStride, count: kvDim) }
    }
}

extension FMPQModelTests {
    static func smoothing(_ model: LlamaCPUModel, _ observed: ModelCalibration, alpha: Double) throws -> [KeySmoothing] {
        try (0..<model.config.layerCount).map { try ModelQuantizer.keySmoothing(model.config, keyAbsMax: observed.keys[$0].absMax, alpha: alpha) }
    }

    @Test func calibrationRecordsKeysAndValuesAfterTheSink() throws {
        let (model, _) = try Self.model()
        let (observed, sequences) = try Self.calibration()
        let kvDim = model.config.kvHeadCount * model.config.headDim
        #expect(observed.keys.count == model.config.layerCount && observed.values.count == model.config.layerCount)
        for statistics in observed.keys + observed.values {
            #expect(statistics.channels == kvDim && statistics.rows == sequences[0].count - 1)
            #expect(statistics.absMax.allSatisfy { $0.isFinite } && statistics.absMax.contains { $0 > 0 })
        }
        // Keys have outlier channels (what smoothing is for): the largest pair abs-max is many
        // times the median in some layer.
        let spread = observed.keys.map { s in s.absMax.max()! / s.absMax.sorted()[s.absMax.count / 2] }
        #expect(spread.max()! > 4, "K abs-max spread per layer: \(spread)")
    }

    /// The whole real model with smoothing folded into its fp32 q/k weights: the same logits up
    /// to fp32 rounding, and the cache sees exactly k / s.
    @Test func foldedSmoothingLeavesTheRealModelUnchanged() throws {
        let (model, tokenizer) = try Self.model()
        let (observed, _) = try Self.calibration()
        let smoothing = try Self.smoothing(model, observed, alpha: 1)
        #expect(smoothing.contains { s in s.factors.max()! / s.factors.min()! > 4 }, "real factors are far from 1")
        let prompt = Array(tokenizer.encode(Assets.text, addBOS: false, parseSpecial: false).prefix(16))

        let plainKeys = FoldedQKV.Recorder(model: model)
        model.hooks = plainKeys
        var plain: [Float] = []
        try model.forward(prompt, at: 0, cache: model.makeCache(capacity: 16), logits: &plain, for: .all)
        let folded = try FoldedQKV(model: model, smoothing: smoothing)
        model.hooks = folded
        defer { model.hooks = nil }
        var smoothed: [Float] = []
        try model.forward(prompt, at: 0, cache: model.makeCache(capacity: 16), logits: &smoothed, for: .all)

        let largest = plain.map(abs).max()!
        let worst = zip(plain, smoothed).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-4 * largest, "largest logit change \(worst) of logits up to \(largest)")
        // Per token, relative to the token's largest key: fp32 rounding of the matmul is relative
        // to Σ|w·x|, not to a key that happens to cancel to near zero.
        for layer in 0..<model.config.layerCount {
            let factors = smoothing[layer].factors, kvDim = factors.count
            var worstKey: Float = 0
            for t in 0..<prompt.count {
                let plainRow = plainKeys.keys[layer][(t * kvDim)..<((t + 1) * kvDim)]
                let rowMax = plainRow.map(abs).max()!
                for (c, k) in zip(0..<kvDim, plainRow) {
                    worstKey = max(worstKey, abs(folded.keys[layer][t * kvDim + c] * factors[c] - k) / rowMax)
                }
            }
            #expect(worstKey < 1e-4, "layer \(layer): cached keys are k / s (worst error \(worstKey) of the token's largest key)")
        }
    }

    /// On a real layer's q and k after RoPE: folding leaves q·k unchanged, and smoothing lowers
    /// the error KV4 adds to q·k (what it is for), summed over layers.
    @Test func smoothingLowersTheKV4ErrorOfRealAttentionLogits() throws {
        let (model, tokenizer) = try Self.model()
        let (observed, _) = try Self.calibration()
        let smoothing = try Self.smoothing(model, observed, alpha: 0.5)
        let c = model.config
        let qDim = c.headCount * c.headDim, kvDim = c.kvHeadCount * c.headDim, rows = qDim + 2 * kvDim
        let rope = try RotaryEmbedding(config: c)
        let prompt = Array(tokenizer.encode(Assets.text, addBOS: false, parseSpecial: false).prefix(20))
        var errors = (plain: 0.0, smoothed: 0.0)
        for layer in [1, 8, 15, 22, 29] {
            let capture = InputCapture(layer: layer, slot: .qkv)
            model.hooks = capture
            var logits: [Float] = []
            try model.forward(prompt, at: 0, cache: model.makeCache(capacity: 20), logits: &logits)
            model.hooks = nil
            let n = capture.tokens, inDim = c.dim
            var cosTable = [Float](repeating: 0, count: n * c.ropeDimensions / 2), sinTable = cosTable
            rope.fillTables(firstPosition: 0, tokens: n, cos: &cosTable, sin: &sinTable)

            /// (q, k) after RoPE, [n, qDim] and [n, kvDim], for qkv weights `w`.
            func queriesKeys(_ w: [Float]) -> (q: [Float], k: [Float]) {
                var qkv = [Float](repeating: 0, count: n * rows)
                model.matmul(capture.x, tokens: n, w, inDim: inDim, outDim: rows, &qkv, accumulate: false)
                rope.apply(&qkv, rowStride: rows, tokens: n, heads: c.headCount, cos: cosTable, sin: sinTable)
                qkv.withUnsafeMutableBufferPointer { p in
                    rope.apply(p.baseAddress! + qDim, rowStride: rows, tokens: n, heads: c.kvHeadCount, cos: cosTable, sin: sinTable)
                }
                return ((0..<n).flatMap { qkv[($0 * rows)..<($0 * rows + qDim)] }, (0..<n).flatMap { qkv[($0 * rows + qDim)..<($0 * rows + qDim + kvDim)] })
            }
            /// q·k of every head and causal token pair; Σ|q_c k_c| beside each.
            func attentionLogits(_ q: [Float], _ k: [Float]) -> (dots: [Double], magnitudes: [Double]) {
                var dots: [Double] = [], magnitudes: [Double] = []
                for h in 0..<c.headCount {
                    let g = h / (c.headCount / c.kvHeadCount)
                    for i in 0..<n {
                        for j in 0...i {
                            var dot = 0.0, magnitude = 0.0
                            for d in 0..<c.headDim {
                                let term = Double(q[i * qDim + h * c.headDim + d]) * Double(k[j * kvDim + g * c.headDim + d])
                                dot += term
                                magnitude += abs(term)
                            }
                            dots.append(dot)
                            magnitudes.append(magnitude)
                        }
                    }
                }
                return (dots, magnitudes)
            }
            func kv4(_ k: [Float]) -> [Float] {
                var out = k
                var codes = [UInt8](repeating: 0, count: c.headDim / 2)
                for start in stride(from: 0, to: out.count, by: c.headDim) {
                    out.withUnsafeMutableBufferPointer { p in
                        codes.withUnsafeMutableBufferPointer { codes in
                            let vector = UnsafeMutableBufferPointer(rebasing: p[start..<(start + c.headDim)])
                            let (scale, zero) = KV4.quantize(UnsafeBufferPointer(vector), into: codes)
                            KV4.dequantize(UnsafeBufferPointer(codes), scale: scale, zero: zero, into: vector)
                        }
                    }
                }
                return out
            }

            var folded = model.linearWeights(layer: layer, slot: .qkv)
            try smoothing[layer].fold(intoQKV: &folded, inputs: inDim, heads: c.headCount)
            let (q, k) = queriesKeys(model.linearWeights(layer: layer, slot: .qkv))
            let (qs, ks) = queriesKeys(folded)
            let exact = attentionLogits(q, k), foldedExact = attentionLogits(qs, ks)
            let worst = zip(zip(exact.dots, foldedExact.dots), exact.magnitudes).map { abs($0.0 - $0.1) / max($1, 1e-30) }.max()!
            #expect(worst < 1e-5, "layer \(layer): q·k changed by \(worst) of Σ|q_c k_c| under folding")
            let plainKV4 = attentionLogits(q, kv4(k)).dots, smoothedKV4 = attentionLogits(qs, kv4(ks)).dots
            errors.plain += zip(plainKV4, exact.dots).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
            errors.smoothed += zip(smoothedKV4, exact.dots).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        }
        #expect(errors.smoothed < 0.8 * errors.plain, "KV4 error of q·k: \(errors.smoothed) smoothed, \(errors.plain) plain")
    }

    /// `quantize` with K smoothing: the factors are in the checkpoint and its manifest, survive
    /// write and load, and the quantized model runs; factors for another shape are refused.
    @Test func quantizeRecordsTheSmoothing() throws {
        let (model, tokenizer) = try Self.model()
        let (observed, _) = try Self.calibration(length: 12)
        // Unclipped, unrotated A4, as checkpointRoundTripOnTheRealModel: its 12 calibration tokens leave
        // outliers in A4 blocks, which clipping cuts and rotation spreads over their block (cosine 0.877
        // rotated against > 0.9). This tests the smoothing's round trip, not accuracy.
        let settings = QuantizeSettings(recipe: FMPQRecipe(weightMethod: .rtn, int4Clip: 1, rotation: .none), kv4: true, keySmoothing: 0.5)
        let checkpoint = try ModelQuantizer.quantize(
            model: model, calibration: observed, settings: settings, modelFile: Assets.gguf!, modelFileSHA256: nil,
            source: CalibrationSource(text: "test text"))
        let names = (0..<model.config.layerCount).map(ModelQuantizer.keySmoothingTensor)
        #expect(checkpoint.kvCache == .init(bits: 4, keySmoothing: true, keySmoothingAlpha: 0.5, keySmoothingFactors: names, keyRotation: true))
        let expected = try Self.smoothing(model, observed, alpha: 0.5)
        for layer in 0..<model.config.layerCount {
            #expect(try ModelQuantizer.keySmoothing(checkpoint, layer: layer, config: model.config) == expected[layer])
        }

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fmpq-ks-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try checkpoint.write(to: folder)
        let loaded = try QuantizedCheckpoint.load(from: folder)
        #expect(loaded.kvCache == checkpoint.kvCache)
        #expect(names.allSatisfy { loaded.tensors[$0] == checkpoint.tensors[$0] })

        let prompt = Array(tokenizer.encode(Assets.text, addBOS: false, parseSpecial: false).prefix(8))
        try QuantizedModelHooks.install(on: model, checkpoint: loaded, evaluation: .init(kv4: true))
        defer { model.hooks = nil }
        var quantized: [Float] = []
        try model.forward(prompt, at: 0, cache: model.makeCache(capacity: 8), logits: &quantized)
        model.hooks = nil
        var fp: [Float] = []
        try model.forward(prompt, at: 0, cache: model.makeCache(capacity: 8), logits: &fp)
        let dot = zip(quantized, fp).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let norms = (quantized.reduce(0.0) { $0 + Double($1 * $1) } * fp.reduce(0.0) { $0 + Double($1 * $1) }).squareRoot()
        #expect(dot / norms > 0.9, "cosine of quantized (K smoothed) and FP logits: \(dot / norms)")

        // Factors of the wrong length for this model: installing refuses the checkpoint.
        var wrong = checkpoint
        try wrong.addTensor("short", Tensor([Float](repeating: 1, count: 64), shape: [64]))
        wrong.kvCache.keySmoothingFactors = ["short"] + names.dropFirst()
        #expect(throws: QuantError.self) { try QuantizedModelHooks.install(on: model, checkpoint: wrong, evaluation: .init(kv4: true)) }
    }
}

extension FoldedQKV {
    /// Records the keys the cache would store, changing nothing.
    final class Recorder: ForwardHooks {
        var keys: [[Float]]
        private let kvDim: Int
        init(model: LlamaCPUModel) {
            keys = Array(repeating: [], count: model.config.layerCount)
            kvDim = model.config.kvHeadCount * model.config.headDim
        }
        func linear(layer: Int, slot: LinearSlot, x: UnsafePointer<Float>, tokens: Int, inDim: Int, outDim: Int,
                    firstPosition: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool) -> Bool { false }
        func keysValues(layer: Int, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, firstPosition: Int) {
            for t in 0..<tokens { self.keys[layer] += UnsafeBufferPointer(start: keys + t * rowStride, count: kvDim) }
        }
    }
}
