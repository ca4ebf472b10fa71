/// A Hugging Face model folder: `config.json` and the weights in `model.safetensors`, or sharded as
/// `model-0000K-of-0000N.safetensors` listed by `model.safetensors.index.json`; plus `tokenizer.json`
/// and `tokenizer_config.json` for the tokenizer and chat template (`HuggingFaceTokenizer`).
///
/// Every shard is memory-mapped and its header checked at open; tensors stay in the mapping (F32, F16
/// or BF16) until the loader converts them to fp32, so the model is never held twice.
///
///     let folder = try HuggingFaceModel(folder: "SmolLM2-hf")
///     let model = try LlamaCPUModel(weights: folder)
public final class HuggingFaceModel: LlamaWeightSource, @unchecked Sendable {
    // @unchecked: immutable after init; the shards are read-only mappings.

    public static let configFile = "config.json"
    public static let singleWeightsFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    public let folder: String
    public let config: ModelConfig
    /// Each tensor's shard.
    private let shardOfTensor: [String: SafeTensorsShard]

    /// Opens the folder: reads config.json, maps every shard and checks each header.
    public init(folder: String) throws {
        self.folder = folder
        config = try ModelConfig(huggingFace: folder + "/" + Self.configFile)

        let single = folder + "/" + Self.singleWeightsFile, index = folder + "/" + Self.indexFile
        var shardOfTensor: [String: SafeTensorsShard] = [:]
        if JSONFile.exists(index) {
            let weightMap = try JSONFile.decode(Index.self, path: index, role: "the shard index").weightMap
            var shards: [String: SafeTensorsShard] = [:]
            for fileName in Set(weightMap.values).sorted() {
                // A file name with a slash could point out of the folder: the index names files beside it.
                guard !fileName.contains("/") else {
                    throw ModelError.invalidFile(path: index, reason: "shard '\(fileName)' is not a file name in the folder")
                }
                let path = folder + "/" + fileName
                guard JSONFile.exists(path) else {
                    throw ModelError.missingFile(path: path, reason: "a shard named by \(Self.indexFile)")
                }
                shards[fileName] = try SafeTensorsShard(path: path)
            }
            for (name, fileName) in weightMap {
                let shard = shards[fileName]!
                guard shard.tensors[name] != nil else {
                    throw ModelError.invalidFile(path: shard.path, reason: "\(Self.indexFile) puts tensor '\(name)' in this shard, which lacks it")
                }
                shardOfTensor[name] = shard
            }
        } else if JSONFile.exists(single) {
            let shard = try SafeTensorsShard(path: single)
            for name in shard.tensors.keys { shardOfTensor[name] = shard }
        } else {
            throw ModelError.missingFile(
                path: single, reason: "a Hugging Face model folder needs \(Self.singleWeightsFile) or \(Self.indexFile) with its shards")
        }
        self.shardOfTensor = shardOfTensor
    }

    /// model.safetensors.index.json: which shard holds each tensor.
    private struct Index: Decodable {
        var weightMap: [String: String]
        enum CodingKeys: String, CodingKey { case weightMap = "weight_map" }
    }

    public func name(of tensor: LlamaTensor) -> String {
        switch tensor {
        case .tokenEmbedding: return "model.embed_tokens.weight"
        case .outputNorm: return "model.norm.weight"
        case .output: return "lm_head.weight"
        case let .layer(i, part):
            let layer = "model.layers.\(i)."
            switch part {
            case .attentionNorm: return layer + "input_layernorm.weight"
            case .query: return layer + "self_attn.q_proj.weight"
            case .key: return layer + "self_attn.k_proj.weight"
            case .value: return layer + "self_attn.v_proj.weight"
            case .queryBias: return layer + "self_attn.q_proj.bias"
            case .keyBias: return layer + "self_attn.k_proj.bias"
            case .valueBias: return layer + "self_attn.v_proj.bias"
            case .attentionOutput: return layer + "self_attn.o_proj.weight"
            case .ffnNorm: return layer + "post_attention_layernorm.weight"
            case .ffnGate: return layer + "mlp.gate_proj.weight"
            case .ffnUp: return layer + "mlp.up_proj.weight"
            case .ffnDown: return layer + "mlp.down_proj.weight"
            }
        }
    }

    /// PyTorch shapes are already row-major [out, in].
    public func shape(of tensor: LlamaTensor) -> [Int]? {
        let name = name(of: tensor)
        return shardOfTensor[name]?.tensors[name]?.shape
    }

    public func read(_ tensor: LlamaTensor, into output: UnsafeMutableBufferPointer<Float>) throws {
        let name = name(of: tensor)
        guard let shard = shardOfTensor[name] else { throw ModelError.missingTensor(name) }
        try shard.read(name, into: output)
    }

    /// Llama 3.1 divisors are computed from config.json (`RoPEScaling.llama3`), never stored.
    public func ropeFrequencyFactors() throws -> [Float]? { nil }
}
