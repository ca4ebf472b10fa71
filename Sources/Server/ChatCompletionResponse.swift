import Engine
import Model

// `/v1/chat/completions` responses in OpenAI's shapes: `chat.completion` with a `message`, and the
// streamed `chat.completion.chunk` with a `delta`. Keys OpenAI always sends are written as null
// when empty; decoding is synthesized (the bench client reads these types back).

/// A whole chat completion.
public struct ChatCompletionResponse: Codable, Sendable {
    public struct Message: Codable, Sendable, Equatable {
        public var role = "assistant"
        public var content: String
    }

    public struct Choice: Codable, Sendable {
        public var index = 0
        public var message: Message
        public var logprobs: ChatLogprobs?
        public var finishReason: String

        enum CodingKeys: String, CodingKey {
            case index, message, logprobs
            case finishReason = "finish_reason"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(index, forKey: .index)
            try container.encode(message, forKey: .message)
            try container.encode(logprobs, forKey: .logprobs)
            try container.encode(finishReason, forKey: .finishReason)
        }
    }

    public var id: String
    public var object = "chat.completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: CompletionUsage
}

/// One streamed piece of a chat completion.
public struct ChatCompletionChunk: Codable, Sendable {
    /// What this chunk adds: the role (first chunk only) and text; empty in the last chunk.
    public struct Delta: Codable, Sendable, Equatable {
        public var role: String?
        public var content: String?
    }

    public struct Choice: Codable, Sendable {
        public var index = 0
        public var delta: Delta
        public var logprobs: ChatLogprobs?
        /// "stop" or "length" in the last chunk with a choice; null before.
        public var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case index, delta, logprobs
            case finishReason = "finish_reason"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(index, forKey: .index)
            try container.encode(delta, forKey: .delta)
            try container.encode(logprobs, forKey: .logprobs)
            try container.encode(finishReason, forKey: .finishReason)
        }
    }

    public var id: String
    public var object = "chat.completion.chunk"
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

/// Chat log-probabilities: one entry per generated token.
public struct ChatLogprobs: Codable, Sendable, Equatable {
    public struct Alternative: Codable, Sendable, Equatable {
        public var token: String
        public var logprob: Float
        /// The token's UTF-8 bytes (a token may hold part of a character).
        public var bytes: [UInt8]
    }

    public struct Entry: Codable, Sendable, Equatable {
        public var token: String
        public var logprob: Float
        public var bytes: [UInt8]
        /// The most likely tokens at this step, most likely first.
        public var topLogprobs: [Alternative]

        enum CodingKeys: String, CodingKey {
            case token, logprob, bytes
            case topLogprobs = "top_logprobs"
        }
    }

    public var content: [Entry] = []
    /// Always null: comet has no refusals; OpenAI sends the key.
    public var refusal: String?

    enum CodingKeys: String, CodingKey {
        case content, refusal
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(content, forKey: .content)
        try container.encode(refusal, forKey: .refusal)
    }

    /// Appends the log-probabilities of `tokens`; `tokenizer` gives each token's exact bytes.
    mutating func append(_ tokens: [GeneratedToken], tokenizer: any Tokenizer) {
        func bytes(of id: Int32) -> [UInt8] {
            var bytes: [UInt8] = []
            tokenizer.appendBytes(of: id, atStart: false, to: &bytes)
            return bytes
        }
        for token in tokens {
            guard let chosen = token.logprob else { continue }
            content.append(Entry(
                token: chosen.text, logprob: finiteLogprob(chosen.logprob), bytes: bytes(of: chosen.token),
                topLogprobs: token.topLogprobs.map {
                    Alternative(token: $0.text, logprob: finiteLogprob($0.logprob), bytes: bytes(of: $0.token))
                }))
        }
    }
}
