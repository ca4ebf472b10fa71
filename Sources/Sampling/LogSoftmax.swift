import Glibc

/// A token and its log-probability.
public struct ScoredToken: Sendable, Equatable {
    public var token: Int32
    public var logprob: Float
    public init(token: Int32, logprob: Float) {
        self.token = token
        self.logprob = logprob
    }
}

/// Log-probabilities from logits: log-softmax and the most likely tokens, as OpenAI's `logprobs`
/// reports them.
public enum LogSoftmax {
    /// log Σ exp(values), stably (the maximum is factored out; the sum is accumulated in Double).
    /// -inf when every value is -inf (or there are none).
    public static func logSumExp(_ values: some Collection<Float>) -> Float {
        let maximum = values.max() ?? -.infinity
        guard maximum > -.infinity else { return -.infinity }
        guard maximum < .infinity else { return .infinity }
        var sum = 0.0
        for value in values { sum += Double(expf(value - maximum)) }
        return maximum + Float(log(sum))
    }

    /// The `n` largest of `values` as (index, value - logSumExp), largest first; ties go to the lower
    /// index (as `Sampler.argmax` picks).
    public static func top(_ n: Int, of values: some Collection<Float>, logSumExp: Float) -> [ScoredToken] {
        guard n > 0 else { return [] }
        // A short sorted list, most likely first: one pass, n compares at most per value that enters.
        var best: [ScoredToken] = []
        best.reserveCapacity(n + 1)
        for (i, value) in values.enumerated() {
            if best.count == n, let last = best.last, !(value > last.logprob) { continue }
            var at = best.count
            while at > 0, value > best[at - 1].logprob { at -= 1 }
            best.insert(ScoredToken(token: Int32(i), logprob: value), at: at)
            if best.count > n { best.removeLast() }
        }
        return best.map { ScoredToken(token: $0.token, logprob: $0.logprob - logSumExp) }
    }
}
