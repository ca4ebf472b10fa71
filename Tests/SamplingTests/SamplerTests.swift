import Foundation
@testable import Sampling
import Testing

struct SamplerTests {
    /// Logits whose softmax is known: id i has logit log(weights[i]).
    static let weights: [Float] = [0.05, 0.4, 0.02, 0.25, 0.1, 0.15, 0.03]
    static let logits = weights.map { Float(log(Double($0))) }

    /// How often each id is drawn in `n` samples.
    static func histogram(_ parameters: SamplingParameters, n: Int = 4000, history: [Int32] = []) -> [Int] {
        var sampler = Sampler(parameters)
        var counts = [Int](repeating: 0, count: logits.count)
        for _ in 0..<n { counts[Int(sampler.sample(logits, history: history))] += 1 }
        return counts
    }

    @Test func greedyIsArgmax() {
        var sampler = Sampler(.greedy)
        #expect(sampler.sample(Self.logits) == 1)
        #expect(sampler.sample([3, 9, 9, -1]) == 1)  // the first of tied maxima
        #expect(Sampler.argmax(Self.logits) == 1)
    }

    @Test func plainSamplingFollowsTheDistribution() {
        let n = 20000
        let counts = Self.histogram(SamplingParameters(seed: 1), n: n)
        for (count, p) in zip(counts, Self.weights) {
            // 5 standard deviations of a binomial.
            #expect(abs(Double(count) / Double(n) - Double(p)) < 5 * (Double(p) * (1 - Double(p)) / Double(n)).squareRoot())
        }
    }

    @Test func topKNeverLeavesTheKBest() {
        let counts = Self.histogram(SamplingParameters(topK: 2, seed: 2))
        #expect(counts[1] > 0 && counts[3] > 0)
        #expect(counts.enumerated().allSatisfy { [1, 3].contains($0.offset) || $0.element == 0 })
        // Renormalized: 0.4 : 0.25.
        #expect(abs(Double(counts[1]) / Double(counts[1] + counts[3]) - 0.4 / 0.65) < 0.03)
    }

    @Test func topPKeepsTheSmallestNucleus() {
        // Sorted: 0.4, 0.25, 0.15 (cumulative 0.8), 0.1, ...: p = 0.75 keeps three.
        let counts = Self.histogram(SamplingParameters(topP: 0.75, seed: 3))
        #expect(counts[1] > 0 && counts[3] > 0 && counts[5] > 0)
        #expect(counts.enumerated().allSatisfy { [1, 3, 5].contains($0.offset) || $0.element == 0 })
    }

    @Test func minPDropsUnlikelyTokens() {
        // 0.25 * 0.4 = 0.1: ids with probability >= 0.1 stay (1, 3, 4, 5).
        let counts = Self.histogram(SamplingParameters(minP: 0.25, seed: 4))
        #expect(counts.enumerated().allSatisfy { [1, 3, 4, 5].contains($0.offset) == ($0.element > 0) })
    }

    @Test func temperatureSharpensAndFlattens() {
        let cold = Self.histogram(SamplingParameters(temperature: 0.1, seed: 5))
        #expect(cold[1] > 3900)
        let hot = Self.histogram(SamplingParameters(temperature: 10, seed: 5))
        #expect(hot.allSatisfy { $0 > 300 })  // near uniform: about 571 each
    }

    /// On a Llama-3-sized vocabulary (fresh random logits with a peaked head, like a model's), the
    /// tokens left after temperature, top-k, top-p and min-p equal a reference that sorts the whole
    /// vocabulary and works in Double. Where the reference's cumulative mass is within 1e-5 of p at
    /// the cut (fp32 sums may land either side), either cut is accepted.
    @Test(arguments: [
        SamplingParameters(temperature: 0.7, topP: 0.9),
        SamplingParameters(temperature: 1.0, topP: 0.95),
        SamplingParameters(temperature: 1.3, topP: 0.999),
        SamplingParameters(temperature: 0.8, topK: 50),
        SamplingParameters(temperature: 0.8, topK: 200, topP: 0.8),
        SamplingParameters(temperature: 0.9, topP: 0.9, minP: 0.05),
    ])
    func filtersMatchAFullSortReference(_ parameters: SamplingParameters) {
        var random = SystemRandomNumberGenerator()
        let vocab = 128_256
        var logits = (0..<vocab).map { _ in Float.random(in: -4...4, using: &random) }
        for _ in 0..<300 { logits[Int.random(in: 0..<vocab, using: &random)] += Float.random(in: 6...14, using: &random) }
        logits[Int.random(in: 0..<vocab, using: &random)] = -.infinity  // a banned token
        logits[7] = logits[8]  // a tie, broken by the lower id

        var sampler = Sampler(parameters)
        let got = sampler.drawableTokens(logits)

        let tempered = logits.map { Double($0) / Double(parameters.temperature) }
        var order = (0..<vocab).filter { tempered[$0] > -.infinity }
        order.sort { tempered[$0] > tempered[$1] || (tempered[$0] == tempered[$1] && $0 < $1) }
        if parameters.topK > 0 { order = Array(order.prefix(parameters.topK)) }
        let maximum = tempered[order[0]]
        let total = order.reduce(0.0) { $0 + exp(tempered[$1] - maximum) }
        var cuts: [Int] = [order.count]
        if parameters.topP < 1 {
            var mass = 0.0
            cuts = []
            for (i, id) in order.enumerated() {
                mass += exp(tempered[id] - maximum) / total
                if mass >= Double(parameters.topP) - 1e-5 { cuts.append(i + 1) }
                if mass >= Double(parameters.topP) + 1e-5 { break }
            }
        }
        let accepted = cuts.map { cut -> [Int32] in
            var kept = Array(order.prefix(cut))
            if parameters.minP > 0 {
                let threshold = Double(parameters.minP) * exp(0) / total
                kept = kept.filter { exp(tempered[$0] - maximum) / total >= threshold * 0.99999 }
            }
            return kept.map(Int32.init)
        }
        let matches = !got.isEmpty && accepted.contains(got)  // a Bool: #expect would print 128K ids
        #expect(matches, "kept \(got.count) tokens; the reference keeps one of \(accepted.map(\.count)) tokens")
    }

    @Test func sameSeedSameTokensOtherSeedOtherTokens() {
        func draw(_ seed: UInt64) -> [Int32] {
            var sampler = Sampler(SamplingParameters(temperature: 1.5, topK: 5, topP: 0.95, seed: seed))
            return (0..<64).map { _ in sampler.sample(Self.logits) }
        }
        #expect(draw(42) == draw(42))
        #expect(draw(42) != draw(43))
    }

    @Test func penalties() {
        var logits: [Float] = [2, -2, 1, 0]
        // Repetition: 2 / 2 = 1 and -2 * 2 = -4 for the seen ids 0 and 1.
        var sampler = Sampler(SamplingParameters(temperature: 0, repetitionPenalty: 2))
        #expect(sampler.sample(logits, history: [0, 1]) == 0)  // 1 vs 1 at id 2: the first wins
        logits = [2, -2, 1.5, 0]
        #expect(sampler.sample(logits, history: [0, 1]) == 2)
        // Frequency: 2 - 0.3 * 3 = 1.1 < 1.5; presence alone: 2 - 0.3 = 1.7 > 1.5.
        sampler = Sampler(SamplingParameters(temperature: 0, frequencyPenalty: 0.3))
        #expect(sampler.sample(logits, history: [0, 0, 0]) == 2)
        sampler = Sampler(SamplingParameters(temperature: 0, presencePenalty: 0.3))
        #expect(sampler.sample(logits, history: [0, 0, 0]) == 0)
        // The window: only the last token counts.
        sampler = Sampler(SamplingParameters(temperature: 0, frequencyPenalty: 1, penaltyWindow: 1))
        #expect(sampler.sample(logits, history: [0, 0, 3]) == 0)
    }

    @Test func validation() {
        #expect(throws: SamplingError.self) { try SamplingParameters(temperature: -1).validate() }
        #expect(throws: SamplingError.self) { try SamplingParameters(topP: 0).validate() }
        #expect(throws: SamplingError.self) { try SamplingParameters(topK: -3).validate() }
        #expect(throws: SamplingError.self) { try SamplingParameters(minP: 2).validate() }
        #expect(throws: SamplingError.self) { try SamplingParameters(repetitionPenalty: 0).validate() }
        #expect(throws: Never.self) { try SamplingParameters(temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05).validate() }
    }
}

/// Log-probabilities against a Double reference.
struct LogprobTests {
    static let logits: [Float] = [1.5, -2, 3.25, 3.25, 0, -Float.infinity, 0.5]

    static func referenceLogprob(_ i: Int, _ values: [Float]) -> Double {
        let m = Double(values.max()!)
        let sum = values.reduce(0.0) { $0 + exp(Double($1) - m) }
        return Double(values[i]) - m - log(sum)
    }

    @Test func logSumExpIsStable() {
        #expect(abs(Double(LogSoftmax.logSumExp(Self.logits)) - (Double(Self.logits[2]) - Self.referenceLogprob(2, Self.logits))) < 1e-5)
        #expect(LogSoftmax.logSumExp([1000, 1000]) == 1000 + Float(log(2.0)))
        #expect(LogSoftmax.logSumExp([-Float.infinity, -.infinity]) == -.infinity)
    }

    @Test func topIsSortedWithTiesToTheLowerIndex() {
        let lse = LogSoftmax.logSumExp(Self.logits)
        let top = LogSoftmax.top(4, of: Self.logits, logSumExp: lse)
        #expect(top.map(\.token) == [2, 3, 0, 6])
        for entry in top {
            #expect(abs(Double(entry.logprob) - Self.referenceLogprob(Int(entry.token), Self.logits)) < 1e-5)
        }
        #expect(LogSoftmax.top(0, of: Self.logits, logSumExp: lse).isEmpty)
        #expect(LogSoftmax.top(100, of: Self.logits, logSumExp: lse).count == Self.logits.count)
    }

    @Test func samplingWithLogprobsDrawsTheSameTokens() throws {
        let parameters = SamplingParameters(temperature: 0.8, topP: 0.9, seed: 9)
        var plain = Sampler(parameters), scored = Sampler(parameters)
        for _ in 0..<200 {
            let result = scored.sample(SamplerTests.logits, topLogprobs: 3)
            #expect(result.token == plain.sample(SamplerTests.logits))
            let logprob = try #require(result.logprob)
            #expect(abs(Double(logprob) - Self.referenceLogprob(Int(result.token), SamplerTests.logits)) < 1e-5)
            #expect(result.topLogprobs.map(\.token) == [1, 3, 5])
        }
    }

    @Test func logprobsAreOfThePenalizedLogits() {
        // A repetition penalty of 2 halves the positive logit of token 2 (seen in the history).
        var sampler = Sampler(SamplingParameters(temperature: 0, repetitionPenalty: 2))
        let result = sampler.sample(Self.logits, history: [2], topLogprobs: 1)
        var penalized = Self.logits
        penalized[2] /= 2
        #expect(result.token == 3)
        #expect(abs(Double(result.logprob!) - Self.referenceLogprob(3, penalized)) < 1e-5)
        #expect(result.topLogprobs.map(\.token) == [3])
        #expect(sampler.sample(Self.logits, history: [2], topLogprobs: nil).logprob == nil)
    }
}
