import CPUBackend
import Engine
import FMPQModel
import Foundation
import Model
import Quant
import Sampling
import Testing

/// Records the input of one linear (the test's window onto a real layer).
final class InputCapture: ForwardHooks {
    let layer: Int, slot: LinearSlot
    var x: [Float] = []
    var tokens = 0
    init(layer: Int, slot: LinearSlot) { self.layer = layer; self.slot = slot }
    func linear(layer: Int, slot: LinearSlot, x: UnsafePointer<Float>, tokens: Int, inDim: Int, outDim: Int,
                firstPosition: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool) -> Bool {
        if layer == self.layer && slot == self.slot {
            self.x += Array(UnsafeBufferPointer(start: x, count: tokens * inDim))
            self.tokens += tokens
        }
        return false
    }
}

@Suite(.serialized, .enabled(if: Assets.gguf != nil, Assets.missing))
struct FMPQModelTests {
    static func model() throws -> (LlamaCPUModel, any Tokenizer) { try Assets.shared.get() }

    static func calibration(length: Int = 24) throws -> (ModelCalibration, [[Int32]]) {
        let (model, tokenizer) = try model()
        let tokens = tokenizer.encode(Assets.text, addBOS: false, parseSpecial: false)
        let sequences = Calibrator.sequences(from: tokens, count: 1, length: length)
        return (try Calibrator.calibrate(model: model, sequences: sequences, hessians: false), sequences)
    }

    @Test func calibrationStatisticsAreSaneAndSkipTheSink() throws {
        let (model, _) = try Self.model()
        let (observed, sequences) = try Self.calibration()
        #expect(model.hooks == nil, "calibration removes its hooks")
        #expect(observed.tokens == 24 && observed.contextLength == 24)
        #expect(observed.layers.count == model.config.layerCount)
        for layer in [0, model.config.layerCount - 1] {
            for slot in LinearSlot.allCases {
                let s = observed[layer, slot].statistics
                #expect(s.channels == model.linearShape(slot).inDim)
                #expect(s.rows == sequences[0].count - 1, "position 0 (the attention sink) is excluded")
                #expect(s.absMax.allSatisfy { $0.isFinite } && s.absMax.contains { $0 > 0 })
                #expect(zip(s.rms, s.absMax).allSatisfy { $0 <= $1 * 1.0001 })
            }
        }
    }

    /// The quantized forward's product equals the exact W4Ax reference (int32 per block, fp32
    /// promotion) on a real layer's real inputs, up to fp32 rounding of the sum of |terms|.
    @Test(arguments: [LinearSlot.down, .qkv])
    func quantizedLinearMatchesTheReference(slot: LinearSlot) throws {
        let (model, tokenizer) = try Self.model()
        let capture = InputCapture(layer: 1, slot: slot)
        model.hooks = capture
        defer { model.hooks = nil }
        let cache = model.makeCache(capacity: 16)
        var logits: [Float] = []
        try model.forward(Array(tokenizer.encode(Assets.text, addBOS: false, parseSpecial: false).prefix(6)), at: 0, cache: cache, logits: &logits)
        let shape = model.linearShape(slot)
        var statistics = CalibrationStatistics(channels: shape.inDim)
        try statistics.add(capture.x, tokens: capture.tokens)
        let recipe = FMPQRecipe(weightMethod: .rtn)
        let (weights, permutation) = try recipe.quantize(
            weights: model.linearWeights(layer: 1, slot: slot), outputs: shape.outDim, statistics: statistics)
        #expect(permutation.layout.int8Blocks > 0)
        let linear = try QuantizedLinear(weights: weights, permutation: permutation)
        let y = linear.apply(capture.x, tokens: capture.tokens)
        let activations = try QuantizedActivations(
            quantizing: permutation.permuteColumns(capture.x, rows: capture.tokens), tokens: capture.tokens, layout: permutation.layout)
        let (reference, magnitude) = try W4AxLinear.referenceWithMagnitude(activations, weights)
        var worst: Float = 0
        for i in y.indices {
            worst = max(worst, abs(y[i] - reference[i]) / max(magnitude[i], 1e-30))
        }
        #expect(worst < 1e-5, "largest error relative to the sum of |terms|: \(worst)")
    }

    /// quantize -> write -> load gives the same checkpoint and the same quantized logits, and
    /// a corrupted byte is refused.
    @Test func checkpointRoundTripOnTheRealModel() throws {
        let (model, tokenizer) = try Self.model()
        let (observed, _) = try Self.calibration(length: 12)
        // Unclipped A4: a 12-token calibration misses outlier channels, which then sit in A4 blocks,
        // where clipping them costs much (the accuracy table's unpermuted row); this test is about
        // the round trip, and its FP-closeness bound is for a model that is not damaged that way.
        let settings = QuantizeSettings(recipe: FMPQRecipe(weightMethod: .rtn, int4Clip: 1), kv4: true)
        let checkpoint = try ModelQuantizer.quantize(
            model: model, calibration: observed, settings: settings, modelFile: Assets.gguf!, modelFileSHA256: nil,
            source: CalibrationSource(text: "test text"))
        #expect(checkpoint.layers.values.allSatisfy { $0.int4Clip == 1 })
        let summary = INT8ShareSummary(checkpoint, layers: model.config.layerCount)
        #expect(summary.perLayer.count == model.config.layerCount)
        #expect(summary.blocks > 0.1 && summary.blocks <= 0.2)
        #expect(checkpoint.calibration.tokens == 12 && checkpoint.calibration.excludesSink)
        #expect(checkpoint.kvCache.bits == 4 && checkpoint.kvCache.rotatesKeys, "quantize's default: KV4, keys rotated")

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fmpq-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try checkpoint.write(to: folder)
        let loaded = try QuantizedCheckpoint.load(from: folder)
        // (Compared part by part: a failure must not print 40 MB of tensors.)
        #expect(loaded.tensors.keys.sorted() == checkpoint.tensors.keys.sorted())
        #expect(loaded.tensors.allSatisfy { $0.value == checkpoint.tensors[$0.key] })
        #expect(loaded.layers == checkpoint.layers && loaded.calibration == checkpoint.calibration)
        #expect(ModelQuantizer.sameConfig(loaded.model, checkpoint.model))

        let prompt = Array(tokenizer.encode(Assets.text, addBOS: false, parseSpecial: false).prefix(8))
        func logits(_ c: QuantizedCheckpoint) throws -> [Float] {
            try QuantizedModelHooks.install(on: model, checkpoint: c, evaluation: .init(kv4: true))
            defer { model.hooks = nil }
            var out: [Float] = []
            try model.forward(prompt, at: 0, cache: model.makeCache(capacity: 8), logits: &out)
            return out
        }
        let a = try logits(checkpoint), b = try logits(loaded)
        #expect(a == b && a.allSatisfy { $0.isFinite })
        var fp: [Float] = []
        try model.forward(prompt, at: 0, cache: model.makeCache(capacity: 8), logits: &fp)
        #expect(a != fp, "the hooks change the model")
        // Close to the FP logits, not equal (a 12-token RTN calibration may change the top token).
        let dot = zip(a, fp).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let norms = (a.reduce(0.0) { $0 + Double($1 * $1) } * fp.reduce(0.0) { $0 + Double($1 * $1) }).squareRoot()
        #expect(dot / norms > 0.9, "cosine of quantized and FP logits: \(dot / norms)")

        // One flipped byte in the tensor file: loading names the corrupt tensor.
        let file = folder + "/" + QuantizedCheckpoint.tensorFile
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count - 100] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: file))
        #expect {
            _ = try QuantizedCheckpoint.load(from: folder)
        } throws: { error in
            guard case .checksumMismatch = error as? CheckpointError else { return false }
            return "\(error)".contains("corrupt")
        }
    }

    /// A quantized checkpoint serves on the CPU through the engine: the runner (paged KV, hooks called
    /// per sequence) gives the logits of the model's own forward with the same hooks, and the engine
    /// the greedy tokens of direct forward calls.
    @Test func aQuantizedModelServesThroughTheCPURunner() async throws {
        let (model, tokenizer) = try Self.model()
        let (observed, _) = try Self.calibration(length: 12)
        let checkpoint = try ModelQuantizer.quantize(
            model: model, calibration: observed, settings: QuantizeSettings(recipe: FMPQRecipe(weightMethod: .rtn), kv4: true),
            modelFile: Assets.gguf!, modelFileSHA256: nil, source: CalibrationSource(text: "test text"))
        try QuantizedModelHooks.install(on: model, checkpoint: checkpoint, evaluation: .init(kv4: true))
        defer { model.hooks = nil }
        let prompt = Array(tokenizer.encode(Assets.text, addBOS: false, parseSpecial: false).prefix(6))

        let cache = model.makeCache(capacity: 8)
        var direct: [Float] = []
        try model.forward(prompt, at: 0, cache: cache, logits: &direct)
        let runner = try CPUModelRunner(model: model, kvBlockSize: 4, kvBlockCount: 8, maxStepTokens: 8, maxStepSequences: 2)
        var viaRunner: [Float] = []
        try runner.execute([StepSequence(tokens: prompt, firstPosition: 0, blockTable: [5, 2], needsLogits: true)], logits: &viaRunner)
        #expect(viaRunner == direct)

        var greedy = [Sampler.argmax(direct)]
        try model.forward([greedy[0]], at: prompt.count, cache: cache, logits: &direct)
        greedy.append(Sampler.argmax(direct))
        let engine = try LLMEngine(runner: runner, tokenizer: tokenizer, chatTemplate: .chatML(defaultSystemPrompt: nil),
                                   configuration: EngineConfiguration(modelName: "fmpq"))
        var served: [Int32] = []
        for try await event in try engine.generate(GenerationRequest(id: "q", prompt: prompt, maxTokens: 2, ignoreEndOfText: true)) {
            if case let .tokens(tokens) = event { served += tokens.map(\.token) }
        }
        await engine.shutdown()
        #expect(served == greedy)
    }

    @Test func calibrationWindowsSpreadOverTheText() {
        let tokens = (0..<100).map { Int32($0) }
        let windows = Calibrator.sequences(from: tokens, count: 3, length: 10)
        #expect(windows.map { $0.first! } == [0, 45, 90] && windows.allSatisfy { $0.count == 10 })
    }
}
