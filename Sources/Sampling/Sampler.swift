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
    /// Module-internal: `deviceRow` draws from it too.
    var random: RandomSource
    /// The penalized, then tempered, logits: [vocab].
    private var working: [Float] = []
    /// Token ids still in the running, most likely first once sorted.
    private var candidates: [Int32] = []
    /// Their probabilities, parallel to `candidates`.
    private var probabilities: [Float] = []
    /// Occurrences of each token in the penalty window.
    private var counts: [Int32: Int32] = [:]
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
        guard applyFilters() else { return Self.argmax(logits) }
        return draw()
    }

    /// The tokens `logits` (already penalized) may be drawn from after temperature and the filters,
    /// in the order the draw walks them (tests compare it with a reference).
    mutating func drawableTokens(_ logits: [Float]) -> [Int32] {
        working = logits
        return applyFilters() ? candidates : []
    }

    /// Tempers `working` and leaves in `candidates` / `probabilities` the tokens that may be drawn;
    /// false when every token is banned.
    private mutating func applyFilters() -> Bool {
        // Tempered logits; top-k and top-p need the candidates most likely first.
        let inverseTemperature = 1 / parameters.temperature
        candidates.removeAll(keepingCapacity: true)
        for i in working.indices {
            working[i] *= inverseTemperature
            // -inf (a banned token) can never be drawn.
            if working[i] > -Float.infinity { candidates.append(Int32(i)) }
        }
        if candidates.isEmpty { return false }

        // Top-k: the k most likely, in order. Only the tokens a filter needs are ordered (selection,
        // then a sort of those few): a full sort of a 128K vocabulary took ~10 ms per row.
        var ordered = 0  // candidates[0..<ordered] are the most likely, most likely first
        if parameters.topK > 0 {
            let k = min(parameters.topK, candidates.count)
            orderBest(k)
            candidates.removeSubrange(k...)
            ordered = k
        }

        // Softmax over the candidates. Sums in Double: a nucleus can hold most of a 128K
        // vocabulary, and fp32 running sums drift by ~1e-4 over that many terms.
        let maximum = candidates.reduce(-Float.infinity) { max($0, working[Int($1)]) }
        var total = 0.0
        for id in candidates { total += Double(expf(working[Int(id)] - maximum)) }

        // Top-p: the shortest most-likely-first prefix whose mass reaches p (at least one token),
        // ordering more candidates (64, then 8x) only while the prefix falls short.
        if parameters.topP < 1 {
            var mass = 0.0, keep = 0
            var reached = false
            while !reached {
                if keep == ordered {
                    let grown = min(candidates.count, max(64, 8 * ordered))
                    orderBest(grown)
                    ordered = grown
                }
                while keep < ordered {
                    mass += Double(expf(working[Int(candidates[keep])] - maximum)) / total
                    keep += 1
                    if mass >= Double(parameters.topP) { reached = true; break }
                }
                if keep == candidates.count { reached = true }
            }
            candidates.removeSubrange(keep...)
        }
        probabilities.removeAll(keepingCapacity: true)
        for id in candidates { probabilities.append(Float(Double(expf(working[Int(id)] - maximum)) / total)) }

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
        return true
    }

    /// Puts the `k` most likely candidates first, most likely first (the lower id first on equal
    /// logits), leaving the rest in any order: quickselect, then a sort of the k.
    private mutating func orderBest(_ k: Int) {
        guard k > 0 else { return }
        working.withUnsafeBufferPointer { w in
            candidates.withUnsafeMutableBufferPointer { c in
                // A strict total order, so the k best are one well-defined set.
                func better(_ a: Int32, _ b: Int32) -> Bool { w[Int(a)] > w[Int(b)] || (w[Int(a)] == w[Int(b)] && a < b) }
                var low = 0, high = c.count - 1
                while low < high && k < c.count {
                    // Median of three as the pivot, then a Lomuto partition of c[low...high].
                    let mid = low + (high - low) / 2
                    if better(c[mid], c[low]) { c.swapAt(mid, low) }
                    if better(c[high], c[low]) { c.swapAt(high, low) }
                    if better(c[high], c[mid]) { c.swapAt(high, mid) }
                    c.swapAt(mid, high)
                    let pivot = c[high]
                    var store = low
                    for i in low..<high where better(c[i], pivot) {
                        c.swapAt(i, store)
                        store += 1
                    }
                    c.swapAt(store, high)
                    // c[low..<store] beat the pivot, now at `store`.
                    if store == k - 1 || store == k { break }
                    if store > k { high = store - 1 } else { low = store + 1 }
                }
                c[0..<k].sort(by: better)
            }
        }
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
        parameters.countPenalized(history, vocabulary: working.count, into: &counts)
        for (id, count) in counts { working[Int(id)] = parameters.penalized(working[Int(id)], occurrences: count) }
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
