import CPUBackend
import Model
import Sampling

/// Generates text for `generate` and `chat`: runs a prompt, then samples and runs one token at a time,
/// streaming the text. It remembers which tokens its KV cache holds, so that a prompt that extends the
/// previous conversation only runs its new tokens.
struct TextGenerator {
    let model: LlamaCPUModel
    let tokenizer: any Tokenizer
    let cache: KVCache
    /// The tokens whose keys and values are in `cache`, in order.
    private(set) var cachedTokens: [Int32] = []
    private var logits: [Float] = []

    /// What one `generate` call did, for the tokens/s line.
    struct Stats {
        var promptTokens = 0
        /// Prompt tokens whose KV entries were reused from the previous call.
        var reusedTokens = 0
        var generatedTokens = 0
        var promptSeconds = 0.0
        var generationSeconds = 0.0
        /// Why generation stopped.
        var stopReason = "max tokens"

        var summary: String {
            func rate(_ n: Int, _ s: Double) -> String { s > 0 ? format1(Double(n) / s) : "-" }
            var line = "\(generatedTokens) tokens in \(format2(generationSeconds)) s: \(rate(generatedTokens, generationSeconds)) tokens/s"
            let ran = promptTokens - reusedTokens
            line += "; prompt \(promptTokens) tokens"
            if reusedTokens > 0 { line += " (\(reusedTokens) cached)" }
            line += " in \(format2(promptSeconds)) s: \(rate(ran, promptSeconds)) tokens/s; stopped at \(stopReason)"
            return line
        }
    }

    init(model: LlamaCPUModel, tokenizer: any Tokenizer, contextLength: Int) {
        self.model = model
        self.tokenizer = tokenizer
        cache = model.makeCache(capacity: contextLength)
    }

    /// Runs `prompt` (reusing the cached prefix it shares with the previous call) and samples up to
    /// `maxTokens` tokens, stopping before any token in `stopTokens` or when the context is full; each
    /// piece of text is passed to `emit` as soon as it is complete UTF-8. Returns the generated tokens.
    mutating func generate(
        prompt: [Int32], maxTokens: Int, sampler: inout Sampler, stopTokens: Set<Int32>,
        emit: (String) -> Void
    ) throws -> (tokens: [Int32], stats: Stats) {
        precondition(!prompt.isEmpty, "TextGenerator: empty prompt")
        var stats = Stats(promptTokens: prompt.count)
        guard prompt.count < cache.capacity else {
            throw CPUBackendError.contextFull(needed: prompt.count + 1, capacity: cache.capacity)
        }
        // Reuse the shared prefix, but run at least the last prompt token to get its logits.
        let shared = zip(cachedTokens, prompt).prefix { $0 == $1 }.count
        let reuse = min(shared, prompt.count - 1)
        stats.reusedTokens = reuse
        var start = ContinuousClock.now
        try model.forward(prompt[reuse...], at: reuse, cache: cache, logits: &logits)
        cachedTokens = prompt
        stats.promptSeconds = seconds(since: start)

        start = ContinuousClock.now
        var generated: [Int32] = []
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        while true {
            let next = sampler.sample(logits, history: cachedTokens)
            if stopTokens.contains(next) { stats.stopReason = "end of text"; break }
            generated.append(next)
            emit(detokenizer.append(next))
            if generated.count >= maxTokens { break }
            if cachedTokens.count >= cache.capacity { stats.stopReason = "the context limit (\(cache.capacity))"; break }
            try model.forward(CollectionOfOne(next), at: cachedTokens.count, cache: cache, logits: &logits)
            cachedTokens.append(next)
        }
        emit(detokenizer.finish())
        stats.generatedTokens = generated.count
        stats.generationSeconds = seconds(since: start)
        return (generated, stats)
    }
}

/// `x` with one decimal.
func format1(_ x: Double) -> String { formatFixed(x, digits: 1) }
/// `x` with two decimals.
func format2(_ x: Double) -> String { formatFixed(x, digits: 2) }

func formatFixed(_ x: Double, digits: Int) -> String {
    guard x.isFinite else { return "\(x)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let rounded = (abs(x) * scale).rounded()
    let whole = Int(rounded / scale), fraction = Int(rounded) - whole * Int(scale)
    let fractionText = String(fraction)
    let padded = String(repeating: "0", count: max(0, digits - fractionText.count)) + fractionText
    return (x < 0 && rounded > 0 ? "-" : "") + "\(whole)" + (digits > 0 ? "." + padded : "")
}
