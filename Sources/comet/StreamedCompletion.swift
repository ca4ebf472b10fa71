import Engine

/// One request of `generate` or `chat` run through the engine, its text streamed to stdout as it
/// comes: the tokens, and the figures of the tokens/s line.
struct StreamedCompletion {
    var tokens: [Int32] = []
    var promptTokens = 0
    /// Prompt tokens whose KV blocks came from the prefix cache (an earlier turn of a chat).
    var cachedTokens = 0
    /// Seconds to the first token (the prompt's prefill and the first sampled token).
    var promptSeconds = 0.0
    /// Seconds from the first token to the end.
    var generationSeconds = 0.0
    /// Why generation stopped.
    var stopReason = "max tokens"

    /// Runs `request` on `engine`, writing each piece of text to stdout at once.
    init(_ request: GenerationRequest, on engine: LLMEngine) async throws {
        promptTokens = request.prompt.count
        let start = ContinuousClock.now
        var first: ContinuousClock.Instant?
        for try await event in try engine.generate(request) {
            switch event {
            case let .tokens(generated):
                if first == nil { first = .now }
                tokens += generated.map(\.token)
                writeOut(generated.map(\.text).joined())
            case let .finished(reason, usage):
                cachedTokens = usage.cachedPromptTokens
                stopReason = switch reason {
                case .stop: "end of text"
                case .length where usage.completionTokens < request.maxTokens: "the context limit (\(engine.contextLength))"
                case .length: "max tokens"
                }
            }
        }
        let end = ContinuousClock.now
        promptSeconds = seconds(from: start, to: first ?? end)
        generationSeconds = seconds(from: first ?? end, to: end)
    }

    var summary: String {
        func rate(_ n: Int, _ s: Double) -> String { s > 0 ? format1(Double(n) / s) : "-" }
        var line = "\(tokens.count) tokens in \(format2(generationSeconds)) s: \(rate(tokens.count, generationSeconds)) tokens/s"
        line += "; prompt \(promptTokens) tokens"
        if cachedTokens > 0 { line += " (\(cachedTokens) cached)" }
        line += " in \(format2(promptSeconds)) s: \(rate(promptTokens - cachedTokens, promptSeconds)) tokens/s; stopped at \(stopReason)"
        return line
    }
}
