import Engine
import Sampling

/// The parameters `/v1/completions` and `/v1/chat/completions` share: the model, length, sampling,
/// stop strings and streaming. Decoded from the same JSON object as the request that holds them;
/// ranges are checked in `generationRequest`, where each error names its parameter.
struct GenerationParameters: Sendable, Equatable {
    var model: String
    /// `max_tokens` or `max_completion_tokens` (whichever was sent; both must agree).
    var maxTokens: Int?
    /// The name the length came under, for error messages.
    var maxTokensParam = "max_tokens"
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var minP: Double?
    var stop: [String] = []
    var seed: Int64?
    var presencePenalty: Double?
    var frequencyPenalty: Double?
    var repetitionPenalty: Double?
    var n: Int?
    var stream = false
    /// `stream_options.include_usage`: a last chunk carries `usage`.
    var includeUsage = false
    /// vLLM's extension: generate through end-of-text tokens (fixed-length benchmarks).
    var ignoreEOS = false
    /// Accepted and not used, as OpenAI does with it.
    var user: String?

    /// Every JSON key these fields come from.
    static let keys: Set<String> = Set(CodingKeys.allCases.map(\.rawValue))

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, temperature, stop, seed, n, stream, user
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case topP = "top_p"
        case topK = "top_k"
        case minP = "min_p"
        case presencePenalty = "presence_penalty"
        case frequencyPenalty = "frequency_penalty"
        case repetitionPenalty = "repetition_penalty"
        case streamOptions = "stream_options"
        case ignoreEOS = "ignore_eos"
    }

    init(model: String) {
        self.model = model
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        model = try container.decode(String.self, forKey: .model)
        let maxTokens = try container.decodeIntegerIfPresent(Int.self, forKey: .maxTokens)
        let maxCompletionTokens = try container.decodeIntegerIfPresent(Int.self, forKey: .maxCompletionTokens)
        if let maxTokens, let maxCompletionTokens, maxTokens != maxCompletionTokens {
            throw APIError.invalidRequest(
                "max_tokens (\(maxTokens)) and max_completion_tokens (\(maxCompletionTokens)) disagree; send one of them",
                param: "max_completion_tokens")
        }
        self.maxTokens = maxCompletionTokens ?? maxTokens
        if maxCompletionTokens != nil { maxTokensParam = "max_completion_tokens" }
        temperature = try container.decodeIfPresent(Double.self, forKey: .temperature)
        topP = try container.decodeIfPresent(Double.self, forKey: .topP)
        topK = try container.decodeIntegerIfPresent(Int.self, forKey: .topK)
        minP = try container.decodeIfPresent(Double.self, forKey: .minP)
        stop = try container.decodeIfPresent(StopStrings.self, forKey: .stop)?.strings ?? []
        seed = try container.decodeIntegerIfPresent(Int64.self, forKey: .seed)
        presencePenalty = try container.decodeIfPresent(Double.self, forKey: .presencePenalty)
        frequencyPenalty = try container.decodeIfPresent(Double.self, forKey: .frequencyPenalty)
        repetitionPenalty = try container.decodeIfPresent(Double.self, forKey: .repetitionPenalty)
        n = try container.decodeIntegerIfPresent(Int.self, forKey: .n)
        stream = try container.decodeIfPresent(Bool.self, forKey: .stream) ?? false
        if let options = try container.decodeIfPresent(StreamOptions.self, forKey: .streamOptions) {
            guard stream else {
                throw APIError.invalidRequest("stream_options is only allowed when stream is true", param: "stream_options")
            }
            includeUsage = options.includeUsage ?? false
        }
        ignoreEOS = try container.decodeIfPresent(Bool.self, forKey: .ignoreEOS) ?? false
        user = try container.decodeIfPresent(String.self, forKey: .user)
    }

    /// The engine request for `prompt`, every parameter checked against OpenAI's ranges and the
    /// context. When the request sets no length, `defaultMaxTokens` applies, cut to what the context
    /// has left; `promptParam` names what held the prompt in errors.
    func generationRequest(
        id: String, prompt: [Int32], contextLength: Int, defaultMaxTokens: Int, topLogprobs: Int?,
        stopTokens: Set<Int32>?, promptParam: String
    ) throws(APIError) -> GenerationRequest {
        if let n, n != 1 {
            throw .invalidRequest("n=\(n) is not supported: comet generates exactly one choice per request (n=1)", param: "n")
        }
        let maxTokens = maxTokens ?? max(min(defaultMaxTokens, contextLength - prompt.count), 1)
        guard maxTokens >= 1 else { throw .invalidRequest("\(maxTokensParam) must be at least 1, not \(maxTokens)", param: maxTokensParam) }
        // A prompt that alone fills the context is the engine's to refuse (promptTooLong); past that,
        // the requested length must fit beside the prompt.
        if prompt.count < contextLength && prompt.count + maxTokens > contextLength {
            throw .invalidRequest(
                "this model's context is \(contextLength) tokens; the prompt has \(prompt.count) and \(maxTokensParam) asks for \(maxTokens) more (at most \(contextLength - prompt.count) fit)",
                param: maxTokensParam, code: "context_length_exceeded")
        }

        var sampling = SamplingParameters(penaltyWindow: 0)  // OpenAI's penalties see the whole text
        if let temperature {
            try check(temperature.isFinite && (0...2).contains(temperature), "temperature", "must be between 0 and 2 (0 is greedy), not \(temperature)")
            sampling.temperature = Float(temperature)
        }
        if let topP {
            try check(topP > 0 && topP <= 1, "top_p", "must be in (0, 1] (1 turns it off), not \(topP)")
            sampling.topP = Float(topP)
        }
        if let topK {
            try check(topK >= -1, "top_k", "must be -1 or 0 (off) or a positive count, not \(topK)")
            sampling.topK = max(topK, 0)
        }
        if let minP {
            try check((0...1).contains(minP), "min_p", "must be in [0, 1] (0 turns it off), not \(minP)")
            sampling.minP = Float(minP)
        }
        if let presencePenalty {
            try check((-2...2).contains(presencePenalty), "presence_penalty", "must be between -2 and 2, not \(presencePenalty)")
            sampling.presencePenalty = Float(presencePenalty)
        }
        if let frequencyPenalty {
            try check((-2...2).contains(frequencyPenalty), "frequency_penalty", "must be between -2 and 2, not \(frequencyPenalty)")
            sampling.frequencyPenalty = Float(frequencyPenalty)
        }
        if let repetitionPenalty {
            try check(repetitionPenalty > 0 && repetitionPenalty.isFinite, "repetition_penalty", "must be > 0 (1 turns it off), not \(repetitionPenalty)")
            sampling.repetitionPenalty = Float(repetitionPenalty)
        }
        sampling.seed = seed.map { UInt64(bitPattern: $0) } ?? UInt64.random(in: .min ... .max)

        try check(stop.count <= 4, "stop", "takes at most 4 strings, not \(stop.count)")
        try check(!stop.contains(""), "stop", "strings must not be empty")

        return GenerationRequest(
            id: id, prompt: prompt, sampling: sampling, maxTokens: maxTokens, stopStrings: stop,
            stopTokens: stopTokens, ignoreEndOfText: ignoreEOS, topLogprobs: topLogprobs)
    }

    private func check(_ ok: Bool, _ param: String, _ message: String) throws(APIError) {
        if !ok { throw .invalidRequest("\(param) \(message)", param: param) }
    }
}

/// `stop`: one string or an array of strings.
private struct StopStrings: Decodable {
    var strings: [String]
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(String.self) {
            strings = [one]
        } else if let many = try? container.decode([String].self) {
            strings = many
        } else {
            throw APIError.invalidRequest("stop must be a string or an array of at most 4 strings", param: "stop", code: "invalid_type")
        }
    }
}

/// `stream_options`: only `include_usage`.
private struct StreamOptions: Decodable {
    var includeUsage: Bool?
    enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    init(from decoder: any Decoder) throws {
        try decoder.refuseUnknownKeys(allowed: ["include_usage"])
        includeUsage = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(Bool.self, forKey: .includeUsage)
    }
}
