import Engine

// `/v1/completions` responses in OpenAI's shapes. A streamed chunk has the same shape as the whole
// response ("object": "text_completion"), with the text so far left out. Keys OpenAI always sends
// are written as null when empty (custom `encode(to:)`); decoding is synthesized (the bench client
// reads these types back).

/// OpenAI's `usage`.
public struct CompletionUsage: Codable, Sendable, Equatable {
    public struct PromptTokensDetails: Codable, Sendable, Equatable {
        /// Prompt tokens whose KV blocks came from the prefix cache.
        public var cachedTokens: Int
        enum CodingKeys: String, CodingKey { case cachedTokens = "cached_tokens" }
    }

    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int
    public var promptTokensDetails: PromptTokensDetails?

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
        case promptTokensDetails = "prompt_tokens_details"
    }

    public init(_ usage: Usage) {
        promptTokens = usage.promptTokens
        completionTokens = usage.completionTokens
        totalTokens = usage.totalTokens
        promptTokensDetails = PromptTokensDetails(cachedTokens: usage.cachedPromptTokens)
    }
}

/// Whether and how a chunk carries `usage`: absent unless `stream_options.include_usage`, then null
/// in every chunk but the last.
enum UsageField: Sendable, Equatable {
    case absent
    case null
    case value(CompletionUsage)

    func encode<Key: CodingKey>(into container: inout KeyedEncodingContainer<Key>, forKey key: Key) throws {
        switch self {
        case .absent: break
        case .null: try container.encodeNil(forKey: key)
        case let .value(usage): try container.encode(usage, forKey: key)
        }
    }

    var usage: CompletionUsage? {
        if case let .value(usage) = self { return usage }
        return nil
    }
}

/// A whole completion, or one streamed chunk of it.
public struct CompletionResponse: Codable, Sendable {
    public struct Choice: Codable, Sendable {
        public var index = 0
        public var text: String
        public var logprobs: CompletionLogprobs?
        /// "stop" or "length"; null until the last chunk.
        public var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case index, text, logprobs
            case finishReason = "finish_reason"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(index, forKey: .index)
            try container.encode(text, forKey: .text)
            try container.encode(logprobs, forKey: .logprobs)
            try container.encode(finishReason, forKey: .finishReason)
        }
    }

    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: CompletionUsage?
    /// How `usage` is written (decoding reads it back into `usage` only).
    var usageField: UsageField = .absent

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage
    }

    init(id: String, created: Int, model: String, choices: [Choice], usage: UsageField) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage.usage
        self.usageField = usage
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(object, forKey: .object)
        try container.encode(created, forKey: .created)
        try container.encode(model, forKey: .model)
        try container.encode(choices, forKey: .choices)
        try usageField.encode(into: &container, forKey: .usage)
    }
}

/// The legacy completions log-probabilities: parallel arrays, one entry per generated token.
public struct CompletionLogprobs: Codable, Sendable, Equatable {
    public var tokens: [String] = []
    public var tokenLogprobs: [Float] = []
    /// The most likely alternatives at each step, token text to log-probability.
    public var topLogprobs: [[String: Float]] = []
    /// Where each token's text starts in the completion, in Unicode scalars.
    public var textOffset: [Int] = []

    enum CodingKeys: String, CodingKey {
        case tokens
        case tokenLogprobs = "token_logprobs"
        case topLogprobs = "top_logprobs"
        case textOffset = "text_offset"
    }

    /// Appends `tokens`, whose texts start at `offset` scalars into the completion.
    mutating func append(_ tokens: [GeneratedToken], startingAt offset: Int) {
        var offset = offset
        for token in tokens {
            guard let chosen = token.logprob else { continue }
            self.tokens.append(chosen.text)
            tokenLogprobs.append(finiteLogprob(chosen.logprob))
            var alternatives: [String: Float] = [:]
            for alternative in token.topLogprobs where alternatives[alternative.text] == nil {
                alternatives[alternative.text] = finiteLogprob(alternative.logprob)
            }
            topLogprobs.append(alternatives)
            textOffset.append(offset)
            offset += token.text.unicodeScalars.count
        }
    }
}

/// JSON has no infinities: a log-probability of -inf (a token ruled out) is written as -9999, as
/// OpenAI does.
func finiteLogprob(_ value: Float) -> Float {
    value.isFinite ? value : -9999
}
