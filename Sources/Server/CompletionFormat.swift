import Engine
import Model

/// What differs between `/v1/completions` and `/v1/chat/completions`: the shape of the whole
/// response and of the streamed chunks. `GenerationResponder` drives either.
protocol CompletionFormat: Sendable {
    associatedtype Whole: Encodable & Sendable
    associatedtype Chunk: Encodable & Sendable

    /// The response of a finished generation.
    func response(text: String, tokens: [GeneratedToken], finishReason: FinishReason, usage: Usage) -> Whole
    /// Chunks streamed before the first token.
    func openingChunks() -> [Chunk]
    /// The chunk for `tokens` just generated, whose text starts `textOffset` Unicode scalars into
    /// the completion; nil when they carry neither text nor log-probabilities.
    func chunk(for tokens: [GeneratedToken], textOffset: Int) -> Chunk?
    /// The last chunk with a choice: empty text and the finish reason.
    func finishChunk(_ reason: FinishReason) -> Chunk
    /// After the finish chunk when `stream_options.include_usage`: no choices, only `usage`.
    func usageChunk(_ usage: Usage) -> Chunk
}

/// Identity shared by the whole response and every chunk of one request.
struct CompletionIdentity: Sendable {
    var id: String
    /// Unix seconds.
    var created: Int
    var model: String
}

/// `/v1/completions`: "text_completion" objects; chunks have the same shape.
struct TextCompletionFormat: CompletionFormat {
    var identity: CompletionIdentity
    /// `logprobs` was sent.
    var wantsLogprobs: Bool
    /// `stream_options.include_usage`: every chunk carries `"usage": null`, the last one the usage.
    var includeUsage: Bool

    func response(text: String, tokens: [GeneratedToken], finishReason: FinishReason, usage: Usage) -> CompletionResponse {
        var logprobs: CompletionLogprobs?
        if wantsLogprobs {
            logprobs = CompletionLogprobs()
            logprobs?.append(tokens, startingAt: 0)
        }
        return make([.init(text: text, logprobs: logprobs, finishReason: finishReason.rawValue)], usage: .value(CompletionUsage(usage)))
    }

    func openingChunks() -> [CompletionResponse] { [] }

    func chunk(for tokens: [GeneratedToken], textOffset: Int) -> CompletionResponse? {
        let text = tokens.map(\.text).joined()
        var logprobs: CompletionLogprobs?
        if wantsLogprobs {
            logprobs = CompletionLogprobs()
            logprobs?.append(tokens, startingAt: textOffset)
        }
        guard !text.isEmpty || !(logprobs?.tokens.isEmpty ?? true) else { return nil }
        return make([.init(text: text, logprobs: logprobs, finishReason: nil)], usage: chunkUsage)
    }

    func finishChunk(_ reason: FinishReason) -> CompletionResponse {
        make([.init(text: "", logprobs: nil, finishReason: reason.rawValue)], usage: chunkUsage)
    }

    func usageChunk(_ usage: Usage) -> CompletionResponse {
        make([], usage: .value(CompletionUsage(usage)))
    }

    private var chunkUsage: UsageField { includeUsage ? .null : .absent }

    private func make(_ choices: [CompletionResponse.Choice], usage: UsageField) -> CompletionResponse {
        CompletionResponse(id: identity.id, created: identity.created, model: identity.model, choices: choices, usage: usage)
    }
}

/// `/v1/chat/completions`: a "chat.completion", or "chat.completion.chunk"s whose first delta
/// carries the role.
struct ChatCompletionFormat: CompletionFormat {
    var identity: CompletionIdentity
    var wantsLogprobs: Bool
    var includeUsage: Bool
    /// Gives each token's bytes for the log-probabilities.
    var tokenizer: any Tokenizer

    func response(text: String, tokens: [GeneratedToken], finishReason: FinishReason, usage: Usage) -> ChatCompletionResponse {
        ChatCompletionResponse(
            id: identity.id, created: identity.created, model: identity.model,
            choices: [.init(message: .init(content: text), logprobs: logprobs(tokens), finishReason: finishReason.rawValue)],
            usage: CompletionUsage(usage))
    }

    func openingChunks() -> [ChatCompletionChunk] {
        [make([.init(delta: .init(role: "assistant", content: ""), logprobs: nil, finishReason: nil)], usage: chunkUsage)]
    }

    func chunk(for tokens: [GeneratedToken], textOffset: Int) -> ChatCompletionChunk? {
        let text = tokens.map(\.text).joined()
        let logprobs = logprobs(tokens)
        guard !text.isEmpty || !(logprobs?.content.isEmpty ?? true) else { return nil }
        return make([.init(delta: .init(content: text), logprobs: logprobs, finishReason: nil)], usage: chunkUsage)
    }

    func finishChunk(_ reason: FinishReason) -> ChatCompletionChunk {
        make([.init(delta: .init(), logprobs: nil, finishReason: reason.rawValue)], usage: chunkUsage)
    }

    func usageChunk(_ usage: Usage) -> ChatCompletionChunk {
        make([], usage: .value(CompletionUsage(usage)))
    }

    private var chunkUsage: UsageField { includeUsage ? .null : .absent }

    private func logprobs(_ tokens: [GeneratedToken]) -> ChatLogprobs? {
        guard wantsLogprobs else { return nil }
        var logprobs = ChatLogprobs()
        logprobs.append(tokens, tokenizer: tokenizer)
        return logprobs
    }

    private func make(_ choices: [ChatCompletionChunk.Choice], usage: UsageField) -> ChatCompletionChunk {
        ChatCompletionChunk(id: identity.id, created: identity.created, model: identity.model, choices: choices, usage: usage)
    }
}
