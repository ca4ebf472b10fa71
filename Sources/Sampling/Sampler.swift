import Glibc

/// Picks next tokens from logits with `SamplingParameters` (see there for the order of operations).
///
/// It owns its random generator, seeded from `parameters.seed`: two samplers made with the same
/// parameters return the same tokens for the same logits and histories. Working arrays are kept between
/// calls, so sampling allocates only the first time.
///
///     var sampler = Sampler(SamplingParameters(temperature: 0.7, topP: 0.9, seed: 42))
///     let next = sampler.sample(logits, history: tokensSoFar)
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var random: RandomSource
    /// The penalized, then tempered, logits: [vocab].
    private var working: [Float] = []
    /// Token ids still in the running, most likely first once sorted.
    private var candidates: [Int32] = []
    /// Their probabilities, parallel to `candidates`.
    private var probabilities: [Float] = []
    /// Occurrences of each token in the penalty window.
    private var counts: [Int32: Int] = [:]
    /// The penalized logits, kept for the chosen token's log-probability: [vocab].
    private var penalized: [Float] = []

    /// A sampler; `parameters` should have passed `validate()`.
    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        random = RandomSource(seed: parameters.seed)
    }

    /// The index of the largest value (the first one on ties); -1 for no values.
    public static func argmax(_ values: some Collection<Float>) -> Int32 {
        var best = -1, bestValue = -Float.infinity, i = 0
        for value in values {
            if best < 0 || value > bestValue { best = i; bestValue = value }
            i += 1
        }
        return Int32(best)
    }

    /// The next token for `logits` ([vocab]) after `history` (all tokens so far, prompt included; the
    /// penalties look at its last `penaltyWindow`).
    public mutating func sample(_ logits: [Float], history: some BidirectionalCollection<Int32> = [Int32]()) -> Int32 {
        sample(logits, history: history, topLogprobs: nil).token
    }

    /// The next token, and with `topLogprobs` (n >= 0) its log-probability and the n most likely
    /// tokens' under the penalized logits (log-softmax before temperature and the filters: what
    /// OpenAI and vLLM report). The token drawn is the same as `sample(_:history:)`'s.
    public mutating func sample(
        _ logits: some Collection<Float>, history: some BidirectionalCollection<Int32> = [Int32](), topLogprobs: Int?
    ) -> SampledToken {
        precondition(!logits.isEmpty, "Sampler.sample: no logits")
        working.removeAll(keepingCapacity: true)
        working.append(contentsOf: logits)
        if parameters.hasPenalties { applyPenalties(history) }
        guard let n = topLogprobs else { return SampledToken(token: choose(logits)) }
        let logSumExp = LogSoftmax.logSumExp(working)
        let top = LogSoftmax.top(n, of: working, logSumExp: logSumExp)
        penalized.removeAll(keepingCapacity: true)
        penalized.append(contentsOf: working)
        let token = choose(logits)
        return SampledToken(token: token, logprob: penalized[Int(token)] - logSumExp, topLogprobs: top)
    }

    /// Picks from the penalized logits in `working` (`logits`: the raw ones, the fallback when every
    /// token is banned).
    private mutating func choose(_ logits: some Collection<Float>) -> Int32 {
        if parameters.temperature == 0 { return Self.argmax(working) }

        // Tempered logits; top-k and top-p need the candidates most likely first.
        let inverseTemperature = 1 / parameters.temperature
        candidates.removeAll(keepingCapacity: true)
        for i in working.indices {
            working[i] *= inverseTemperature
            // -inf (a banned token) can never be drawn.
            if working[i] > -Float.infinity { candidates.append(Int32(i)) }
        }
        if candidates.isEmpty { return Self.argmax(logits) }
        let sorted = parameters.topK > 0 || parameters.topP < 1
        if sorted {
            working.withUnsafeBufferPointer { w in
                candidates.sort { w[Int($0)] > w[Int($1)] || (w[Int($0)] == w[Int($1)] && $0 < $1) }
            }
            if parameters.topK > 0, parameters.topK < candidates.count {
                candidates.removeSubrange(parameters.topK...)
            }
        }

        // Softmax over the candidates.
        let maximum = candidates.reduce(-Float.infinity) { max($0, working[Int($1)]) }
        probabilities.removeAll(keepingCapacity: true)
        var total: Float = 0
        for id in candidates {
            let p = expf(working[Int(id)] - maximum)
            probabilities.append(p)
            total += p
        }
        for i in probabilities.indices { probabilities[i] /= total }

        // Top-p: the shortest most-likely-first prefix whose mass reaches p (at least one token).
        if parameters.topP < 1 {
            var mass: Float = 0, keep = 0
            while keep < probabilities.count {
                mass += probabilities[keep]
                keep += 1
                if mass >= parameters.topP { break }
            }
            candidates.removeSubrange(keep...)
            probabilities.removeSubrange(keep...)
        }
        // Min-p: relative to the most likely token, which has probability exp(0) / total.
        if parameters.minP > 0 {
            let threshold = parameters.minP * (probabilities.max() ?? 0)
            var kept = 0
            for i in probabilities.indices where probabilities[i] >= threshold {
                candidates[kept] = candidates[i]
                probabilities[kept] = probabilities[i]
                kept += 1
            }
            candidates.removeSubrange(kept...)
            probabilities.removeSubrange(kept...)
        }
        return draw()
    }

    /// A candidate drawn in proportion to its (not necessarily normalized) probability.
    private mutating func draw() -> Int32 {
        let total = probabilities.reduce(0, +)
        var target = random.nextUnitFloat() * total
        for (id, p) in zip(candidates, probabilities) {
            target -= p
            if target < 0 { return id }
        }
        // Rounding left a sliver of mass: the last candidate with any probability gets it.
        let last = probabilities.lastIndex { $0 > 0 } ?? 0
        return candidates[last]
    }

    /// Repetition (multiplicative), frequency (per occurrence) and presence (once) penalties on the
    /// tokens of the penalty window.
    private mutating func applyPenalties(_ history: some BidirectionalCollection<Int32>) {
        counts.removeAll(keepingCapacity: true)
        let window = parameters.penaltyWindow == 0 ? history.count : parameters.penaltyWindow
        for id in history.suffix(window) where id >= 0 && Int(id) < working.count { counts[id, default: 0] += 1 }
        for (id, count) in counts {
            var logit = working[Int(id)]
            if parameters.repetitionPenalty != 1 {
                logit = logit > 0 ? logit / parameters.repetitionPenalty : logit * parameters.repetitionPenalty
            }
            logit -= parameters.frequencyPenalty * Float(count) + parameters.presencePenalty
            working[Int(id)] = logit
        }
    }
}

/// What `Sampler.sample(_:history:topLogprobs:)` returns.
public struct SampledToken: Sendable, Equatable {
    public var token: Int32
    /// The token's log-probability (nil when not asked for).
    public var logprob: Float?
    /// The most likely tokens, most likely first (empty when not asked for).
    public var topLogprobs: [ScoredToken]

    public init(token: Int32, logprob: Float? = nil, topLogprobs: [ScoredToken] = []) {
        self.token = token
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }
}
