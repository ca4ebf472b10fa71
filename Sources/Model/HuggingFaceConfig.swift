/// The fields of a Hugging Face `config.json` that a llama, mistral or qwen2 model's shape depends on.
struct HuggingFaceConfig: Decodable {
    var modelType: String?
    var architectures: [String]?
    var vocabSize: Int
    var hiddenSize: Int
    var intermediateSize: Int
    var numHiddenLayers: Int
    var numAttentionHeads: Int
    var numKeyValueHeads: Int?
    var headDim: Int?
    var hiddenAct: String?
    var ropeTheta: Double?
    var rmsNormEps: Double?
    var maxPositionEmbeddings: Int
    var tieWordEmbeddings: Bool?
    var attentionBias: Bool?
    var mlpBias: Bool?
    var slidingWindow: Int?
    var useSlidingWindow: Bool?
    var bosTokenId: OneOrMany<Int>?
    var eosTokenId: OneOrMany<Int>?
    var ropeScaling: RoPEScalingJSON?

    struct RoPEScalingJSON: Decodable {
        var ropeType: String?
        /// The key older configs use instead of `rope_type`.
        var type: String?
        var factor: Double?
        var lowFreqFactor: Double?
        var highFreqFactor: Double?
        var originalMaxPositionEmbeddings: Int?

        enum CodingKeys: String, CodingKey {
            case ropeType = "rope_type", type, factor, lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
            case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        }
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", architectures, vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads", headDim = "head_dim"
        case hiddenAct = "hidden_act", ropeTheta = "rope_theta", rmsNormEps = "rms_norm_eps"
        case maxPositionEmbeddings = "max_position_embeddings", tieWordEmbeddings = "tie_word_embeddings"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias", slidingWindow = "sliding_window"
        case useSlidingWindow = "use_sliding_window", bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
        case ropeScaling = "rope_scaling"
    }

    /// `architectures[0]` of each supported `model_type`, for configs that only name the class.
    static let architectureClasses = ["LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"]
}

extension ModelConfig {
    /// The config of a Hugging Face folder's `config.json` (`path` names it in errors).
    ///
    /// Hugging Face checkpoints keep q/k in rotate-half order (`.halves`). Mistral's sliding window:
    /// attention that only sees the last `sliding_window` tokens equals full attention as long as the
    /// context is no longer than the window, so the context length is capped at the window instead of
    /// implementing the window (Mistral 7B v0.1: 4096 of 32768; later Mistrals have none).
    public init(huggingFace path: String) throws {
        let json = try JSONFile.decode(HuggingFaceConfig.self, path: path, role: "a Hugging Face model folder needs its config.json")
        try self.init(huggingFace: json, path: path)
    }

    init(huggingFace json: HuggingFaceConfig, path: String) throws {
        let type = json.modelType ?? json.architectures?.first.flatMap { HuggingFaceConfig.architectureClasses[$0] }
        guard let type, Self.supportedArchitectures.contains(type) else {
            let name = json.modelType ?? json.architectures?.first ?? "(no model_type)"
            throw ModelError.unsupportedArchitecture(name, supported: Self.supportedArchitectures)
        }
        func unsupported(_ what: String) -> ModelError { ModelError.invalidConfig("\(path): \(what) is not supported") }
        if let act = json.hiddenAct, act != "silu" { throw unsupported("hidden_act '\(act)' (only silu, SwiGLU)") }
        if json.mlpBias == true { throw unsupported("mlp_bias") }
        // Llama's attention_bias also adds a bias to o_proj; qwen2 always has q/k/v biases and none on o_proj.
        if type != "qwen2", json.attentionBias == true { throw unsupported("attention_bias for \(type)") }

        let heads = json.numAttentionHeads
        guard heads > 0, json.headDim != nil || json.hiddenSize % heads == 0 else {
            throw ModelError.invalidConfig("\(heads) heads do not divide the model dimension \(json.hiddenSize)")
        }
        var context = json.maxPositionEmbeddings
        let windowed = type == "qwen2" ? json.useSlidingWindow == true : true
        if windowed, let window = json.slidingWindow, window > 0 { context = min(context, window) }

        self.init(
            architecture: type, vocabularySize: json.vocabSize, dim: json.hiddenSize, layerCount: json.numHiddenLayers,
            headCount: heads, kvHeadCount: json.numKeyValueHeads ?? heads, headDim: json.headDim ?? json.hiddenSize / heads,
            ffnDim: json.intermediateSize, ropeBase: json.ropeTheta ?? 10_000, ropeScaling: try RoPEScaling(huggingFace: json.ropeScaling),
            ropeConvention: .halves, rmsNormEpsilon: json.rmsNormEps ?? 1e-6, contextLength: context,
            tiedEmbeddings: json.tieWordEmbeddings ?? false, attentionBias: type == "qwen2",
            bosTokenID: json.bosTokenId?.values.first.map { Int32(truncatingIfNeeded: $0) },
            eosTokenID: json.eosTokenId?.values.first.map { Int32(truncatingIfNeeded: $0) })
        try validate()
    }
}

extension RoPEScaling {
    /// config.json's `rope_scaling`: absent, `linear`, or Llama 3.1's `llama3`.
    init(huggingFace json: HuggingFaceConfig.RoPEScalingJSON?) throws {
        guard let json else { self = .none; return }
        func field<T>(_ value: T?, _ key: String) throws -> T {
            guard let value else { throw ModelError.invalidConfig("rope_scaling has no '\(key)'") }
            return value
        }
        switch json.ropeType ?? json.type {
        case nil, "default":
            self = .none
        case "linear":
            self = .linear(factor: try field(json.factor, "factor"))
        case "llama3":
            let parameters = Llama3RoPEParameters(
                factor: try field(json.factor, "factor"), lowFrequencyFactor: try field(json.lowFreqFactor, "low_freq_factor"),
                highFrequencyFactor: try field(json.highFreqFactor, "high_freq_factor"),
                originalContextLength: try field(json.originalMaxPositionEmbeddings, "original_max_position_embeddings"))
            try parameters.validate()
            self = .llama3(parameters)
        case let other?:
            throw ModelError.invalidConfig("unsupported rope_scaling type '\(other)'; supported: linear, llama3")
        }
    }
}
