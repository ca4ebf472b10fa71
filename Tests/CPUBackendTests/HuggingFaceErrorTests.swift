import CPUBackend
import Foundation
import Model
import Quant
import Testing

/// Every way a Hugging Face folder can be wrong gives one ModelError that names the problem.
@Suite struct HuggingFaceErrorTests {
    /// A valid two-shard folder to break; removed by the caller.
    static func folder(_ tiny: TinyHFModel = TinyHFModel(), shards: Int = 2) throws -> String {
        try tiny.write(to: temporaryFolder("broken"), shards: shards)
    }

    /// Opens `folder` and loads it, expecting a ModelError that `matches`; returns its message.
    @discardableResult
    static func expectError(_ folder: String, sourceLocation: SourceLocation = #_sourceLocation,
                            _ matches: (ModelError) -> Bool) -> String {
        do {
            _ = try LlamaCPUModel(weights: openModel(folder).weights, threads: 1)
            Issue.record("expected a ModelError, the folder loaded", sourceLocation: sourceLocation)
        } catch let error as ModelError {
            #expect(matches(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
            return error.description
        } catch {
            Issue.record("expected a ModelError, got \(error)", sourceLocation: sourceLocation)
        }
        return ""
    }

    static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    @Test func unsupportedArchitecture() throws {
        var tiny = TinyHFModel()
        tiny.extraConfig = ["model_type": "gemma", "architectures": ["GemmaForCausalLM"]]
        let folder = try Self.folder(tiny)
        defer { Self.remove(folder) }
        let message = Self.expectError(folder) { if case .unsupportedArchitecture("gemma", _) = $0 { true } else { false } }
        #expect(message.contains("llama, mistral, qwen2"))
    }

    @Test func unsupportedDType() throws {
        let folder = try Self.folder(shards: 1)
        defer { Self.remove(folder) }
        // Rewrite one tensor as I32 (same size as F32).
        let path = folder + "/model.safetensors"
        let (tensors, _) = try SafeTensorsFile.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: path))), path: path)
        let rewritten = try tensors.sorted { $0.key < $1.key }.map { name, t in
            (name: name, tensor: name == "model.norm.weight" ? try Tensor(dtype: .i32, shape: t.shape, bytes: t.bytes) : t)
        }
        try Data(SafeTensorsFile.encode(rewritten)).write(to: URL(fileURLWithPath: path))
        let message = Self.expectError(folder) {
            if case .unsupportedDType("model.norm.weight", "I32", _) = $0 { true } else { false }
        }
        #expect(message.contains("F32, F16, BF16"))
    }

    @Test func missingShard() throws {
        let folder = try Self.folder()
        defer { Self.remove(folder) }
        try FileManager.default.removeItem(atPath: folder + "/model-00002-of-00002.safetensors")
        Self.expectError(folder) {
            if case let .missingFile(path, reason) = $0 { path.hasSuffix("model-00002-of-00002.safetensors") && reason.contains("index") } else { false }
        }
    }

    @Test func truncatedShard() throws {
        let folder = try Self.folder()
        defer { Self.remove(folder) }
        let path = folder + "/model-00001-of-00002.safetensors"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: path))
        let message = Self.expectError(folder) {
            if case let .invalidFile(p, _) = $0 { p == path } else { false }
        }
        #expect(message.contains("truncated"))
        // Cut inside the header too.
        try bytes.prefix(20).write(to: URL(fileURLWithPath: path))
        Self.expectError(folder) { if case .invalidFile = $0 { true } else { false } }
    }

    @Test func shapeMismatch() throws {
        var tiny = TinyHFModel()
        tiny.setWeight("model.layers.1.mlp.up_proj.weight", ([tiny.ffn, tiny.dim + 1], [Float](repeating: 0, count: tiny.ffn * (tiny.dim + 1))))
        let folder = try Self.folder(tiny)
        defer { Self.remove(folder) }
        Self.expectError(folder) {
            $0 == .unexpectedTensorShape(tensor: "model.layers.1.mlp.up_proj.weight", expected: [48, 32], found: [48, 33])
        }
    }

    @Test func missingTensor() throws {
        var tiny = TinyHFModel(modelType: "qwen2")
        tiny.setWeight("model.layers.0.self_attn.k_proj.bias", nil)
        let folder = try Self.folder(tiny)
        defer { Self.remove(folder) }
        Self.expectError(folder) { $0 == .missingTensor("model.layers.0.self_attn.k_proj.bias") }
        // An untied model without lm_head.
        var untied = TinyHFModel()
        untied.setWeight("lm_head.weight", nil)
        let other = try Self.folder(untied)
        defer { Self.remove(other) }
        Self.expectError(other) { $0 == .missingTensor("lm_head.weight") }
    }

    @Test func missingOrMalformedFiles() throws {
        let folder = try Self.folder(shards: 1)
        defer { Self.remove(folder) }
        try FileManager.default.removeItem(atPath: folder + "/model.safetensors")
        Self.expectError(folder) { if case let .missingFile(_, reason) = $0 { reason.contains("model.safetensors") } else { false } }

        try "{\"model_type\": \"llama\"}".write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
        let message = Self.expectError(folder) { if case .invalidFile = $0 { true } else { false } }
        #expect(message.contains("is missing"), "\(message)")

        try "not json".write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
        Self.expectError(folder) { if case .invalidFile = $0 { true } else { false } }

        try FileManager.default.removeItem(atPath: folder + "/config.json")
        Self.expectError(folder) { if case let .missingFile(path, _) = $0 { path.hasSuffix("config.json") } else { false } }

        Self.expectError(folder + "/nonexistent") { if case .cannotOpen = $0 { true } else { false } }
    }

    @Test func unsupportedConfigValues() throws {
        for (extra, fragment) in [
            (["rope_scaling": ["rope_type": "yarn", "factor": 2.0]], "rope_scaling type 'yarn'"),
            (["rope_scaling": ["rope_type": "llama3", "factor": 8.0]], "low_freq_factor"),
            (["hidden_act": "gelu"], "hidden_act"),
            (["attention_bias": true], "attention_bias"),
            (["num_key_value_heads": 3], "KV heads"),
        ] as [([String: Any], String)] {
            var tiny = TinyHFModel()
            tiny.extraConfig = extra
            let folder = try Self.folder(tiny, shards: 1)
            defer { Self.remove(folder) }
            let message = Self.expectError(folder) { if case .invalidConfig = $0 { true } else { false } }
            #expect(message.contains(fragment), "\(message)")
        }
    }

    @Test func indexNamingATensorItsShardLacks() throws {
        let folder = try Self.folder()
        defer { Self.remove(folder) }
        let indexPath = folder + "/model.safetensors.index.json"
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: indexPath))) as! [String: Any]
        var map = index["weight_map"] as! [String: String]
        map["model.norm.weight"] = map["model.norm.weight"] == "model-00001-of-00002.safetensors"
            ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors"
        index["weight_map"] = map
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: indexPath))
        let message = Self.expectError(folder) { if case .invalidFile = $0 { true } else { false } }
        #expect(message.contains("model.norm.weight"))
    }
}
