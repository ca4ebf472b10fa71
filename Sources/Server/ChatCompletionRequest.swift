import Model

/// The body of `POST /v1/chat/completions`. Any key not listed in `keys` is refused by name.
struct ChatCompletionRequest: Decodable, Sendable {
    var parameters: GenerationParameters
    var messages: [ChatMessage]
    /// Whether to report log-probabilities.
    var logprobs: Bool
    /// How many alternatives per token (needs `logprobs`).
    var topLogprobs: Int?

    /// OpenAI's limit on `top_logprobs`.
    static let maxTopLogprobs = 20

    static let keys = GenerationParameters.keys.union(CodingKeys.allCases.map(\.rawValue))

    enum CodingKeys: String, CodingKey, CaseIterable {
        case messages, logprobs
        case topLogprobs = "top_logprobs"
    }

    init(from decoder: any Decoder) throws {
        try decoder.refuseUnknownKeys(allowed: Self.keys)
        parameters = try GenerationParameters(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        messages = try container.decode([MessageValue].self, forKey: .messages).map(\.message)
        guard !messages.isEmpty else { throw APIError.invalidRequest("messages must not be empty", param: "messages") }
        logprobs = try container.decodeIfPresent(Bool.self, forKey: .logprobs) ?? false
        topLogprobs = try container.decodeIntegerIfPresent(Int.self, forKey: .topLogprobs)
        if let topLogprobs {
            guard (0...Self.maxTopLogprobs).contains(topLogprobs) else {
                throw APIError.invalidRequest("top_logprobs must be between 0 and \(Self.maxTopLogprobs), not \(topLogprobs)", param: "top_logprobs")
            }
            guard logprobs else { throw APIError.invalidRequest("top_logprobs needs logprobs set to true", param: "top_logprobs") }
        }
    }

    /// What the engine is asked for: nil without `logprobs`, else the count of alternatives.
    var engineTopLogprobs: Int? { logprobs ? (topLogprobs ?? 0) : nil }

    /// The conversation rendered with the model's chat template, ending where the assistant's reply
    /// begins, as token ids.
    /// Control tokens come from the template only: one typed into a message stays text.
    func promptTokens(_ tokenizer: any Tokenizer, template: ChatTemplate) throws(APIError) -> [Int32] {
        do {
            return try template.encode(messages, tokenizer: tokenizer)
        } catch {
            throw .invalidRequest("\(error)", param: "messages")
        }
    }

    /// Generation stops at the model's end-of-text token and at the template's end of turn.
    static func stopTokens(_ tokenizer: any Tokenizer, template: ChatTemplate) -> Set<Int32> {
        Set([tokenizer.eosTokenID, tokenizer.tokenID(for: template.endOfTurn)].compactMap { $0 })
    }
}

/// One message: `role` and `content` (a string, or an array of text parts), nothing else.
private struct MessageValue: Decodable {
    var message: ChatMessage

    enum CodingKeys: String, CodingKey {
        case role, content
    }

    init(from decoder: any Decoder) throws {
        try decoder.refuseUnknownKeys(allowed: ["role", "content"])
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let roleName = try container.decode(String.self, forKey: .role)
        let role: ChatMessage.Role
        switch roleName {
        case "system", "developer": role = .system  // OpenAI's newer name for system instructions
        case "user": role = .user
        case "assistant": role = .assistant
        default:
            throw APIError.invalidRequest(
                "role '\(roleName)' is not supported: use system, developer, user or assistant",
                param: parameterPath(decoder.codingPath + [CodingKeys.role]))
        }
        let contentParam = parameterPath(decoder.codingPath + [CodingKeys.content])
        guard container.contains(.content) else {
            throw APIError.invalidRequest("missing required parameter '\(contentParam)'", param: contentParam, code: "missing_parameter")
        }
        let content: String
        if let text = try? container.decode(String.self, forKey: .content) {
            content = text
        } else {
            do {
                content = try container.decode([TextPart].self, forKey: .content).map(\.text).joined()
            } catch let error as APIError {
                throw error
            } catch {
                throw APIError.invalidRequest(
                    "\(contentParam) must be a string or an array of text parts", param: contentParam, code: "invalid_type")
            }
        }
        message = ChatMessage(role: role, content: content)
    }
}

/// A content part; only `{"type": "text", "text": ...}` is supported.
private struct TextPart: Decodable {
    var text: String

    enum CodingKeys: String, CodingKey {
        case type, text
    }

    init(from decoder: any Decoder) throws {
        try decoder.refuseUnknownKeys(allowed: ["type", "text"])
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let type = try container.decode(String.self, forKey: .type)
        guard type == "text" else {
            throw APIError.invalidRequest(
                "content parts of type '\(type)' are not supported: only text", param: parameterPath(decoder.codingPath + [CodingKeys.type]))
        }
        text = try container.decode(String.self, forKey: .text)
    }
}
