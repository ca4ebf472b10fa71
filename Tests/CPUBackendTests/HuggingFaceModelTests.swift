import CPUBackend
import Foundation
import Model
import Quant
import Testing

/// Hugging Face folders on tiny synthetic models the tests write: logits against `TinyHFModel`'s naive
/// Double reference (rule: every logit at every position within 1e-4 * max(1, |ref|)), dtypes, shards,
/// qwen2 biases, mistral's sliding window, and Llama 3.1 rope_scaling against transformers' formula.
@Suite struct HuggingFaceModelTests {
    static let tokens: [Int32] = [3, 17, 5, 39, 0, 22, 8]

    /// All logits of `tokens`, one row per position.
    static func logits(_ folder: String, tokens: [Int32] = tokens) throws -> [[Float]] {
        let model = try LlamaCPUModel(weights: HuggingFaceModel(folder: folder), threads: 2, maxBatchTokens: 4)
        let cache = model.makeCache(capacity: tokens.count)
        var logits: [Float] = []
        try model.forward(tokens, at: 0, cache: cache, logits: &logits, for: .all)
        let vocab = model.config.vocabularySize
        return (0..<tokens.count).map { Array(logits[($0 * vocab)..<(($0 + 1) * vocab)]) }
    }

    static func expectClose(_ ours: [[Float]], _ reference: [[Double]], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(ours.count == reference.count, sourceLocation: sourceLocation)
        var worst = 0.0
        for (row, ref) in zip(ours, reference) {
            for (a, b) in zip(row, ref) { worst = max(worst, abs(Double(a) - b) / max(1, abs(b))) }
        }
        #expect(worst <= 1e-4, "worst relative logit error \(worst)", sourceLocation: sourceLocation)
    }

    /// More threads than (head, token) tasks split the chunk into blocks of tokens; the block count
    /// must be recounted from the rounded-up block size (37 tokens x 4 heads on 16 threads once
    /// made empty blocks that trapped). Any thread count gives the same logits.
    @Test func threadCountsGiveTheSameLogits() throws {
        let folder = try TinyHFModel(seed: 11).write(to: temporaryFolder("threads"))
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let tokens = (0..<37).map { Int32($0 * 7 % 40) }
        var results: [[Float]] = []
        for threads in [1, 16, 64] {
            let model = try LlamaCPUModel(weights: HuggingFaceModel(folder: folder), threads: threads, maxBatchTokens: 64)
            let cache = model.makeCache(capacity: tokens.count)
            var logits: [Float] = []
            try model.forward(tokens, at: 0, cache: cache, logits: &logits, for: .all)
            results.append(logits)
        }
        for other in results.dropFirst() {
            let worst = zip(results[0], other).map { abs($0 - $1) / max(1, abs($0)) }.max()!
            #expect(worst <= 1e-6, "threads change logits by \(worst)")
        }
    }

    @Test(arguments: ["llama", "mistral", "qwen2"])
    func logitsMatchTheReference(modelType: String) throws {
        let tiny = TinyHFModel(modelType: modelType, seed: 7)
        let folder = try tiny.write(to: temporaryFolder(modelType))
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let source = try HuggingFaceModel(folder: folder)
        #expect(source.config.architecture == modelType)
        #expect(source.config.ropeConvention == .halves)
        #expect(source.config.attentionBias == (modelType == "qwen2"))
        Self.expectClose(try Self.logits(folder), tiny.referenceLogits(Self.tokens.map(Int.init)))
    }

    /// The biases really are used: the same weights without them give the reference without them,
    /// which differs from the one with them.
    @Test func qwen2BiasesMatter() throws {
        var tiny = TinyHFModel(modelType: "qwen2", seed: 3)
        for l in 0..<tiny.layers {
            for part in ["q", "k", "v"] {
                let name = "model.layers.\(l).self_attn.\(part)_proj.bias"
                let n = tiny.weights[name]!.shape[0]
                tiny.setWeight(name, ([n], [Float](repeating: 0.25, count: n)))
            }
        }
        let folder = try tiny.write(to: temporaryFolder("qwen2-bias"))
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let reference = tiny.referenceLogits(Self.tokens.map(Int.init))
        Self.expectClose(try Self.logits(folder), reference)
        var llama = tiny
        llama.modelType = "llama"
        for l in 0..<tiny.layers { for p in ["q", "k", "v"] { llama.setWeight("model.layers.\(l).self_attn.\(p)_proj.bias", nil) } }
        let withoutBias = llama.referenceLogits(Self.tokens.map(Int.init))
        let difference = zip(reference.joined(), withoutBias.joined()).map { abs($0 - $1) }.max()!
        #expect(difference > 0.01, "biases changed the logits by only \(difference)")
    }

    /// The same (exactly representable) weights stored as F32, F16, BF16, mixed, in 1 or 3 shards and
    /// with tied embeddings: identical logits.
    @Test func dtypesAndShardsGiveIdenticalLogits() throws {
        let tiny = TinyHFModel(modelType: "llama", tied: true, seed: 11)
        var results: [[[Float]]] = []
        let layouts: [(String, Int, (String) -> TensorDType)] = [
            ("f32", 1, { _ in .f32 }), ("f16", 1, { _ in .f16 }), ("bf16", 3, { _ in .bf16 }),
            ("mixed", 3, { $0.hasSuffix("norm.weight") ? .f32 : $0.contains("mlp") ? .f16 : .bf16 }),
        ]
        for (name, shards, dtype) in layouts {
            let folder = try tiny.write(to: temporaryFolder(name), shards: shards, dtype: dtype)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            results.append(try Self.logits(folder))
        }
        for (i, result) in results.enumerated() { #expect(result == results[0], "layout \(layouts[i].0) differs from f32") }
        Self.expectClose(results[0], tiny.referenceLogits(Self.tokens.map(Int.init)))
    }

    /// Mistral's sliding window caps the context (full attention is exact within the window).
    @Test func mistralSlidingWindowCapsTheContext() throws {
        var tiny = TinyHFModel(modelType: "mistral")
        tiny.extraConfig = ["sliding_window": 16]
        let folder = try tiny.write(to: temporaryFolder("mistral"))
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(try HuggingFaceModel(folder: folder).config.contextLength == 16)
        tiny.extraConfig = ["sliding_window": NSNull()]
        try tiny.write(to: folder)
        #expect(try HuggingFaceModel(folder: folder).config.contextLength == 64)
    }

    struct RoPEFixture: Decodable {
        struct Scaling: Decodable {
            var factor: Double
            var low_freq_factor: Double
            var high_freq_factor: Double
            var original_max_position_embeddings: Int
        }
        struct Case: Decodable {
            var name: String
            var rope_theta: Double
            var head_dim: Int
            var rope_scaling: Scaling
            var inv_freq: [Double]
        }
        var cases: [Case]
    }

    /// config.json's llama3 rope_scaling gives the inverse frequencies of transformers'
    /// `_compute_llama3_parameters` (scripts/make_golden_llama3_rope.py) within 1e-9 relative.
    @Test func llama3RoPEScalingMatchesTransformers() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/llama3_rope.json")
        let fixture = try JSONDecoder().decode(RoPEFixture.self, from: Data(contentsOf: url))
        for c in fixture.cases {
            var tiny = TinyHFModel(modelType: "llama")
            tiny.heads = 2; tiny.kvHeads = 2; tiny.headDim = c.head_dim; tiny.dim = 2 * c.head_dim
            let s = c.rope_scaling
            tiny.extraConfig = ["rope_theta": c.rope_theta, "head_dim": c.head_dim, "rope_scaling": [
                "rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor, "original_max_position_embeddings": s.original_max_position_embeddings]]
            let folder = temporaryFolder("rope")
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try JSONSerialization.data(withJSONObject: tiny.config).write(to: URL(fileURLWithPath: folder + "/config.json"))
            let config = try ModelConfig(huggingFace: folder + "/config.json")
            let rope = try RotaryEmbedding(config: config)
            #expect(rope.frequencies.count == c.inv_freq.count)
            let worst = zip(rope.frequencies, c.inv_freq).map { abs($0 - $1) / $1 }.max() ?? 1
            #expect(worst <= 1e-9, "\(c.name): worst relative error \(worst)")
        }
    }

    /// The scaled frequencies reach the forward pass: a model with llama3 rope_scaling matches the
    /// reference run with the fixture's frequencies (and not with the unscaled ones).
    @Test func llama3ScalingIsUsedByTheForwardPass() throws {
        var tiny = TinyHFModel(modelType: "llama", seed: 5)
        tiny.extraConfig = ["rope_scaling": ["rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                             "high_freq_factor": 8.0, "original_max_position_embeddings": 16]]
        let folder = try tiny.write(to: temporaryFolder("llama3"))
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let parameters = Llama3RoPEParameters(factor: 4, lowFrequencyFactor: 1, highFrequencyFactor: 8, originalContextLength: 16)
        let factors = parameters.frequencyFactors(ropeBase: tiny.ropeTheta, dimensions: tiny.headDim)
        #expect(factors.contains { $0 != 1 }, "the test should scale some frequencies: \(factors)")
        let inverse = (0..<(tiny.headDim / 2)).map { 1 / pow(tiny.ropeTheta, Double(2 * $0) / Double(tiny.headDim)) / factors[$0] }
        Self.expectClose(try Self.logits(folder), tiny.referenceLogits(Self.tokens.map(Int.init), inverseFrequencies: inverse))
    }
}
