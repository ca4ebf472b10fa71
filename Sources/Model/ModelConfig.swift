/// The shape and hyper-parameters of a LLaMA-family model, read from GGUF metadata and validated once.
///
///     let config = try ModelConfig(gguf: gguf)   // SmolLM2-135M: 30 layers, dim 576, 9/3 heads
///
/// Hugging Face folders build it from config.json (`ModelConfig(huggingFace:)` in HuggingFaceConfig.swift).
public struct ModelConfig: Sendable, Equatable {
    /// The architectures we can run: Llama 2/3/3.1, SmolLM2, TinyLlama ("llama"), Mistral ("mistral":
    /// the llama block, with a sliding window we only run within) and Qwen2 ("qwen2": q/k/v biases).
    public static let supportedArchitectures = ["llama", "mistral", "qwen2"]
    /// The architectures accepted from GGUF metadata (`general.architecture`); Mistral GGUFs say "llama".
    public static let supportedGGUFArchitectures = ["llama", "qwen2"]

    public var architecture: String
    public var vocabularySize: Int
    /// Model (residual stream) dimension.
    public var dim: Int
    public var layerCount: Int
    public var headCount: Int
    /// Key/value heads (grouped-query attention when < headCount).
    public var kvHeadCount: Int
    public var headDim: Int
    /// Hidden dimension of the SwiGLU feed-forward block.
    public var ffnDim: Int
    /// Rotary embedding base (theta).
    public var ropeBase: Double
    /// Channels of each head that are rotated (usually headDim).
    public var ropeDimensions: Int
    public var ropeScaling: RoPEScaling
    /// How Q/K channels are paired for rotation in this file's weights.
    public var ropeConvention: RoPEConvention
    public var rmsNormEpsilon: Double
    /// The context length the model was trained for.
    public var contextLength: Int
    /// True when the output projection reuses the token embedding (no `output.weight` tensor).
    public var tiedEmbeddings: Bool
    /// True when the q, k and v projections add a bias (Qwen2).
    public var attentionBias: Bool
    public var bosTokenID: Int32?
    public var eosTokenID: Int32?

    /// A config given field by field (synthetic models, tests); call `validate()` before use.
    public init(
        architecture: String = "llama", vocabularySize: Int, dim: Int, layerCount: Int, headCount: Int,
        kvHeadCount: Int, headDim: Int, ffnDim: Int, ropeBase: Double, ropeDimensions: Int? = nil,
        ropeScaling: RoPEScaling = .none, ropeConvention: RoPEConvention = .adjacentPairs, rmsNormEpsilon: Double = 1e-5,
        contextLength: Int, tiedEmbeddings: Bool = false, attentionBias: Bool = false, bosTokenID: Int32? = nil,
        eosTokenID: Int32? = nil
    ) {
        self.architecture = architecture
        self.vocabularySize = vocabularySize
        self.dim = dim
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.ffnDim = ffnDim
        self.ropeBase = ropeBase
        self.ropeDimensions = ropeDimensions ?? headDim
        self.ropeScaling = ropeScaling
        self.ropeConvention = ropeConvention
        self.rmsNormEpsilon = rmsNormEpsilon
        self.contextLength = contextLength
        self.tiedEmbeddings = tiedEmbeddings
        self.attentionBias = attentionBias
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
    }

    /// Llama-3-8B's shape (the performance model of DESIGN.md §4; weights are made from a seed).
    public static let llama3_8B = ModelConfig(
        vocabularySize: 128_256, dim: 4096, layerCount: 32, headCount: 32, kvHeadCount: 8, headDim: 128,
        ffnDim: 14336, ropeBase: 500_000, contextLength: 8192, bosTokenID: 128_000, eosTokenID: 128_009)

    /// Llama-3-70B's shape.
    public static let llama3_70B = ModelConfig(
        vocabularySize: 128_256, dim: 8192, layerCount: 80, headCount: 64, kvHeadCount: 8, headDim: 128,
        ffnDim: 28672, ropeBase: 500_000, contextLength: 8192, bosTokenID: 128_000, eosTokenID: 128_009)

    /// Reads and validates the config of a `llama` or `qwen2` GGUF.
    public init(gguf: GGUFFile) throws {
        let arch = try required(gguf.string("general.architecture"), "general.architecture")
        guard Self.supportedGGUFArchitectures.contains(arch) else {
            throw ModelError.unsupportedArchitecture(arch, supported: Self.supportedGGUFArchitectures)
        }
        func key(_ suffix: String) -> String { "\(arch).\(suffix)" }
        func int(_ suffix: String) throws -> Int { try required(gguf.int(key(suffix)), key(suffix)) }

        architecture = arch
        dim = try int("embedding_length")
        layerCount = try int("block_count")
        headCount = try int("attention.head_count")
        kvHeadCount = try gguf.int(key("attention.head_count_kv")) ?? headCount
        ffnDim = try int("feed_forward_length")
        contextLength = try int("context_length")
        rmsNormEpsilon = try required(gguf.double(key("attention.layer_norm_rms_epsilon")), key("attention.layer_norm_rms_epsilon"))
        ropeBase = try gguf.double(key("rope.freq_base")) ?? 10_000
        let keyLength = try gguf.int(key("attention.key_length"))
        guard headCount > 0, keyLength != nil || dim % headCount == 0 else {
            throw ModelError.invalidConfig("\(headCount) heads do not divide the model dimension \(dim)")
        }
        headDim = keyLength ?? dim / headCount
        ropeDimensions = try gguf.int(key("rope.dimension_count")) ?? headDim
        ropeScaling = try RoPEScaling(gguf: gguf, architecture: arch)
        // convert_hf_to_gguf.py permutes q/k of llama models from HF's rotate-half layout to adjacent
        // pairs; it leaves qwen2's as they are, and llama.cpp runs those with NeoX (rotate-half) RoPE.
        ropeConvention = arch == "qwen2" ? .halves : .adjacentPairs
        attentionBias = gguf.tensor(named: LlamaTensorNames.layer(0).queryBias) != nil

        let tokens = try gguf.strings("tokenizer.ggml.tokens")
        vocabularySize = try gguf.int(key("vocab_size")) ?? required(tokens?.count, "tokenizer.ggml.tokens")
        tiedEmbeddings = gguf.tensor(named: LlamaTensorNames.output) == nil
        bosTokenID = try gguf.int("tokenizer.ggml.bos_token_id").map { Int32(truncatingIfNeeded: $0) }
        eosTokenID = try gguf.int("tokenizer.ggml.eos_token_id").map { Int32(truncatingIfNeeded: $0) }
        try validate()
    }

    /// Checks the relations the forward pass relies on.
    public func validate() throws {
        func check(_ condition: Bool, _ reason: @autoclosure () -> String) throws {
            if !condition { throw ModelError.invalidConfig(reason()) }
        }
        try check(dim > 0 && layerCount > 0 && ffnDim > 0 && vocabularySize > 0,
                  "dimensions must be positive (dim \(dim), layers \(layerCount), ffn \(ffnDim), vocab \(vocabularySize))")
        try check(kvHeadCount > 0 && headCount % kvHeadCount == 0,
                  "\(kvHeadCount) KV heads do not divide \(headCount) heads")
        try check(headDim > 0 && headDim % 2 == 0, "head dimension \(headDim) must be even and positive")
        try check(ropeDimensions > 0 && ropeDimensions <= headDim && ropeDimensions % 2 == 0,
                  "RoPE dimension count \(ropeDimensions) must be even and at most the head dimension \(headDim)")
        try check(ropeBase > 0, "RoPE base \(ropeBase) must be positive")
        try check(rmsNormEpsilon > 0, "RMS norm epsilon \(rmsNormEpsilon) must be positive")
        for id in [bosTokenID, eosTokenID].compactMap({ $0 }) {
            try check(id >= 0 && Int(id) < vocabularySize, "special token id \(id) is outside the vocabulary (\(vocabularySize))")
        }
    }

    /// Every tensor the llama forward pass reads from a GGUF file, with its GGUF name and GGML shape
    /// (`shape[0]` is the input dimension: `expectedTensors` reversed).
    public var expectedTensorShapes: [(name: String, shape: [Int])] {
        expectedTensors.map { (LlamaTensorNames.name(of: $0.tensor), $0.shape.reversed()) }
    }

    /// Throws `missingTensor` or `unexpectedTensorShape` unless `gguf` holds every expected tensor.
    public func checkTensors(in gguf: GGUFFile) throws {
        try GGUFWeights(file: gguf, config: self).checkTensors()
    }
}

/// Which channels of a head RoPE rotates together.
public enum RoPEConvention: String, Sendable, Equatable {
    /// Channels (2i, 2i+1) form a pair: GGUF llama files (llama.cpp's "normal" RoPE).
    case adjacentPairs
    /// Channels (i, i + d/2) form a pair: Hugging Face `rotate_half` (NeoX style).
    case halves
}

/// How RoPE frequencies are stretched for contexts longer than the training context.
public enum RoPEScaling: Sendable, Equatable {
    case none
    /// Positions divided by `factor`.
    case linear(factor: Double)
    /// YaRN, from `rope.scaling.*`.
    case yarn(factor: Double, originalContextLength: Int)
    /// Llama 3.1 style: per-frequency divisors stored in the tensor `rope_freqs.weight`.
    case frequencyFactors(tensor: String)
    /// Llama 3.1 style, the divisors computed from config.json's `rope_scaling` (Hugging Face folders).
    case llama3(Llama3RoPEParameters)

    init(gguf: GGUFFile, architecture arch: String) throws {
        if gguf.tensor(named: LlamaTensorNames.ropeFrequencies) != nil {
            self = .frequencyFactors(tensor: LlamaTensorNames.ropeFrequencies)
            return
        }
        let type = try gguf.string("\(arch).rope.scaling.type")
        let factor = try gguf.double("\(arch).rope.scaling.factor") ?? gguf.double("\(arch).rope.scale_linear")
        switch type {
        case nil where factor != nil && factor != 1, "linear":
            self = .linear(factor: try required(factor, "\(arch).rope.scaling.factor"))
        case "yarn":
            let original = try required(gguf.int("\(arch).rope.scaling.original_context_length"),
                                        "\(arch).rope.scaling.original_context_length")
            self = .yarn(factor: try required(factor, "\(arch).rope.scaling.factor"), originalContextLength: original)
        case nil, "none":
            self = .none
        case let other?:
            throw ModelError.invalidConfig("unsupported RoPE scaling type '\(other)'; supported: none, linear, yarn, frequency factors")
        }
    }
}
