import Model

/// The body of `POST /v1/completions`. Any key not listed in `keys` is refused by name.
struct CompletionRequest: Decodable, Sendable {
    var parameters: GenerationParameters
    var prompt: Prompt
    /// How many alternatives to report per token (0: only the chosen token's log-probability).
    var logprobs: Int?

    /// A prompt as text, or as token ids (sent as they are, no BOS added).
    enum Prompt: Sendable, Equatable {
        case text(String)
        case tokens([Int])
    }

    /// OpenAI's completions default when `max_tokens` is absent.
    static let defaultMaxTokens = 16
    /// The most alternatives `logprobs` may ask for (vLLM's limit; OpenAI stops at 5).
    static let maxLogprobs = 20

    static let keys = GenerationParameters.keys.union(CodingKeys.allCases.map(\.rawValue))

    enum CodingKeys: String, CodingKey, CaseIterable {
        case prompt, logprobs
    }

    init(from decoder: any Decoder) throws {
        try decoder.refuseUnknownKeys(allowed: Self.keys)
        parameters = try GenerationParameters(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        prompt = try container.decode(PromptValue.self, forKey: .prompt).prompt
        logprobs = try container.decodeIntegerIfPresent(Int.self, forKey: .logprobs)
        if let logprobs, !(0...Self.maxLogprobs).contains(logprobs) {
            throw APIError.invalidRequest("logprobs must be between 0 and \(Self.maxLogprobs), not \(logprobs)", param: "logprobs")
        }
    }

    /// The prompt's token ids: text is encoded as `comet generate` does (BOS when the model wants
    /// it, special tokens written in the text recognized); ids must be in the vocabulary.
    func promptTokens(_ tokenizer: any Tokenizer) throws(APIError) -> [Int32] {
        switch prompt {
        case let .text(text):
            let ids = tokenizer.encode(text, addBOS: tokenizer.addsBOS, parseSpecial: true)
            guard !text.isEmpty, !ids.isEmpty else { throw .invalidRequest("the prompt is empty", param: "prompt") }
            return ids
        case let .tokens(ids):
            guard !ids.isEmpty else { throw .invalidRequest("the prompt is empty", param: "prompt") }
            if let index = ids.firstIndex(where: { !(0..<tokenizer.vocabularySize).contains($0) }) {
                throw .invalidRequest(
                    "prompt token \(ids[index]) is outside the vocabulary (0..<\(tokenizer.vocabularySize))", param: "prompt.\(index)")
            }
            return ids.map { Int32($0) }
        }
    }
}

/// `prompt`: a string, an array of token ids, or a one-element array of either (what batching
/// clients send for a single prompt). Batches of several prompts are refused.
private struct PromptValue: Decodable {
    var prompt: CompletionRequest.Prompt

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            prompt = .text(text)
        } else if let ids = try? container.decode([Int].self) {
            prompt = .tokens(ids)
        } else if let texts = try? container.decode([String].self) {
            guard texts.count == 1 else { throw Self.batch(texts.count) }
            prompt = .text(texts[0])
        } else if let batches = try? container.decode([[Int]].self) {
            guard batches.count == 1 else { throw Self.batch(batches.count) }
            prompt = .tokens(batches[0])
        } else {
            throw APIError.invalidRequest(
                "prompt must be a string or an array of token ids", param: "prompt", code: "invalid_type")
        }
    }

    static func batch(_ count: Int) -> APIError {
        .invalidRequest("a batch of \(count) prompts is not supported: send one prompt per request", param: "prompt")
    }
}
