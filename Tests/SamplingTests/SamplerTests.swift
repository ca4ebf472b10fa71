import Foundation
import Sampling
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
