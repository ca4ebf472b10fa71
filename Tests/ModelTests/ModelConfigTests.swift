@testable import Model
import Testing

@Suite struct ModelConfigTests {
    /// Metadata of a tiny Llama-3-like model; `change` edits it before writing.
    private func config(_ change: (inout [String: GGUFValue]) -> Void = { _ in },
                        tensors: [String] = []) throws -> ModelConfig {
        var metadata: [String: GGUFValue] = [
            "general.architecture": .string("llama"),
            "llama.embedding_length": .uint32(256),
            "llama.block_count": .uint32(2),
            "llama.attention.head_count": .uint32(8),
            "llama.attention.head_count_kv": .uint32(2),
            "llama.feed_forward_length": .uint32(512),
            "llama.context_length": .uint32(4096),
            "llama.attention.layer_norm_rms_epsilon": .float32(1e-5),
            "llama.rope.freq_base": .float32(500_000),
            "llama.vocab_size": .uint32(1000),
            "tokenizer.ggml.bos_token_id": .uint32(998),
            "tokenizer.ggml.eos_token_id": .uint32(999),
        ]
        change(&metadata)
        var writer = GGUFWriter()
        for key in metadata.keys.sorted() { writer.add(key, metadata[key]!) }
        for name in tensors { writer.addTensor(name, shape: [32], type: .f32, data: [UInt8](repeating: 0, count: 128)) }
        return try ModelConfig(gguf: openGGUF(writer.bytes().bytes))
    }

    @Test func readsALlamaConfig() throws {
        let c = try config()
        #expect(c.dim == 256 && c.layerCount == 2 && c.headCount == 8 && c.kvHeadCount == 2)
        #expect(c.headDim == 32 && c.ropeDimensions == 32 && c.ffnDim == 512 && c.vocabularySize == 1000)
        #expect(c.ropeBase == 500_000 && c.contextLength == 4096 && c.ropeScaling == .none)
        #expect(c.bosTokenID == 998 && c.eosTokenID == 999)
        #expect(c.tiedEmbeddings)
        #expect(try !config(tensors: [LlamaTensorNames.output]).tiedEmbeddings)
        // 2 layers x 9 tensors + embedding + final norm (+ output when untied).
        #expect(c.expectedTensorShapes.count == 20)
        #expect(c.expectedTensorShapes.contains { $0.name == "blk.1.attn_k.weight" && $0.shape == [256, 64] })
    }

    /// A qwen2 GGUF: unpermuted q/k (rotate-half, as llama.cpp runs it) and q/k/v biases when present.
    @Test func readsAQwen2Config() throws {
        let c = try config({ metadata in
            for (key, value) in metadata where key.hasPrefix("llama.") {
                metadata["qwen2." + key.dropFirst("llama.".count)] = value
                metadata[key] = nil
            }
            metadata["general.architecture"] = .string("qwen2")
        }, tensors: [LlamaTensorNames.layer(0).queryBias])
        #expect(c.architecture == "qwen2" && c.ropeConvention == .halves && c.attentionBias)
        #expect(c.expectedTensorShapes.count == 20 + 2 * 3)
        #expect(c.expectedTensorShapes.contains { $0.name == "blk.1.attn_v.bias" && $0.shape == [64] })
        #expect(try config().ropeConvention == .adjacentPairs)
        expectModelError({ _ = try config { $0["general.architecture"] = .string("mistral") } }) {
            $0 == .unsupportedArchitecture("mistral", supported: ["llama", "qwen2"])
        }
    }

    @Test func performanceModelShapesAreValid() throws {
        for c in [ModelConfig.llama3_8B, .llama3_70B] {
            try c.validate()
            #expect(c.headCount * c.headDim == c.dim)
        }
        #expect(ModelConfig.llama3_8B.expectedTensorShapes.count == 2 + 32 * 9 + 1)
        expectModelError({ try ModelConfig(vocabularySize: 10, dim: 64, layerCount: 1, headCount: 4, kvHeadCount: 4,
                                           headDim: 15, ffnDim: 64, ropeBase: 1e4, contextLength: 16).validate() }) {
            $0.description.contains("head dimension 15")
        }
    }

    @Test func ropeScalingKeys() throws {
        #expect(try config { $0["llama.rope.scaling.type"] = .string("linear"); $0["llama.rope.scaling.factor"] = .float32(4) }
            .ropeScaling == .linear(factor: 4))
        #expect(try config {
            $0["llama.rope.scaling.type"] = .string("yarn")
            $0["llama.rope.scaling.factor"] = .float32(8)
            $0["llama.rope.scaling.original_context_length"] = .uint32(8192)
        }.ropeScaling == .yarn(factor: 8, originalContextLength: 8192))
        #expect(try config(tensors: [LlamaTensorNames.ropeFrequencies]).ropeScaling == .frequencyFactors(tensor: "rope_freqs.weight"))
        expectModelError({ _ = try config { $0["llama.rope.scaling.type"] = .string("su") } }) { $0.description.contains("'su'") }
    }

    @Test func refusesOtherArchitecturesAndBadValues() {
        expectModelError({ _ = try config { $0["general.architecture"] = .string("gemma") } }) {
            $0 == .unsupportedArchitecture("gemma", supported: ["llama", "qwen2"]) && $0.description.contains("supported: llama, qwen2")
        }
        expectModelError({ _ = try config { $0["llama.block_count"] = nil } }) { $0 == .missingMetadata(key: "llama.block_count") }
        expectModelError({ _ = try config { $0["llama.block_count"] = .string("30") } }) {
            $0 == .wrongMetadataType(key: "llama.block_count", expected: "integer")
        }
        expectModelError({ _ = try config { $0["llama.attention.head_count_kv"] = .uint32(3) } }) {
            $0.description.contains("3 KV heads do not divide 8 heads")
        }
        expectModelError({ _ = try config { $0["llama.attention.head_count"] = .uint32(7) } }) {
            $0.description.contains("do not divide the model dimension")
        }
        expectModelError({ _ = try config { $0["tokenizer.ggml.eos_token_id"] = .uint32(5000) } }) {
            $0.description.contains("outside the vocabulary")
        }
    }

    @Test func checkTensorsNamesWhatIsMissingOrWrong() throws {
        let c = try config()
        var writer = GGUFWriter()
        writer.addTensor(LlamaTensorNames.tokenEmbedding, shape: [256, 999], type: .f32, data: [UInt8](repeating: 0, count: 256 * 999 * 4))
        let gguf = try openGGUF(writer.bytes().bytes)
        expectModelError({ try c.checkTensors(in: gguf) }) {
            $0 == .unexpectedTensorShape(tensor: "token_embd.weight", expected: [256, 1000], found: [256, 999])
        }
        #expect(LlamaTensorNames.layer(4).ffnGate == "blk.4.ffn_gate.weight")
        #expect(LlamaTensorNames.layer(0).attentionOutput == "blk.0.attn_output.weight")
    }
}
