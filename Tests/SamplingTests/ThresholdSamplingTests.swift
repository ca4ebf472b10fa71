import Foundation
@testable import Sampling
import Testing

/// ThresholdSampling (the GPU's procedure, on the CPU) draws from the same distribution as Sampler:
/// the same kept tokens, each with its renormalized probability.
struct ThresholdSamplingTests {
    static func row(_ parameters: SamplingParameters, uniform: Float, counts: [(token: Int32, count: Int32)] = []) -> SamplingRow {
        SamplingRow(parameters: parameters, uniform: uniform, penaltyCounts: counts, wantsLogprob: true)
    }

    @Test(arguments: [
        SamplingParameters(temperature: 0.7, topP: 0.9),
        SamplingParameters(temperature: 1, topK: 7),
        SamplingParameters(temperature: 0.8, minP: 0.1),
        SamplingParameters(temperature: 1.3),
        SamplingParameters(temperature: 0.9, topK: 20, topP: 0.8, minP: 0.02),
        SamplingParameters(temperature: 1, topK: 500, topP: 0.5),
    ])
    func drawsEachKeptTokenWithItsProbability(_ parameters: SamplingParameters) {
        var random = SystemRandomNumberGenerator()
        let vocab = 300
        let logits = (0..<vocab).map { _ in Float.random(in: -3...3, using: &random) }  // no ties (almost surely)
        var sampler = Sampler(parameters)
        let kept = Set(sampler.drawableTokens(logits))

        // The filtered distribution in fp64: exp(t - max) over the kept tokens.
        let t = logits.map { Double($0 * (1 / parameters.temperature)) }
        let m = t.max()!
        let total = kept.reduce(0.0) { $0 + exp(t[Int($1)] - m) }
        // Uniforms on a grid: token i must come out on a share of them equal to its probability.
        let n = 100_000
        var drawn = [Int](repeating: 0, count: vocab)
        for i in 0..<n {
            let (sampled, _) = ThresholdSampling.sample(logits, Self.row(parameters, uniform: (Float(i) + 0.5) / Float(n)))
            drawn[Int(sampled.token)] += 1
        }
        #expect(Set(drawn.indices.filter { drawn[$0] > 0 }.map(Int32.init)).isSubset(of: kept))
        for id in 0..<vocab {
            let probability = kept.contains(Int32(id)) ? exp(t[id] - m) / total : 0
            // A grid of n points gives each interval its length to within 1/n (+ fp32 grid rounding).
            #expect(abs(Double(drawn[id]) / Double(n) - probability) <= 2.0 / Double(n) + 1e-6, "token \(id)")
        }
    }

    @Test func greedyWithPenaltiesIsTheArgmaxOfThePenalizedLogits() {
        let logits: [Float] = [1, 5, 4.9, -2, 3]
        let counts: [(token: Int32, count: Int32)] = [(1, 2)]
        let parameters = SamplingParameters(temperature: 0, repetitionPenalty: 1.5, frequencyPenalty: 0.2)
        let (sampled, _) = ThresholdSampling.sample(logits, Self.row(parameters, uniform: 0.3, counts: counts))
        #expect(sampled.token == 2)  // 5 / 1.5 - 0.4 = 2.93 < 4.9
        var sampler = Sampler(parameters)
        #expect(sampler.sample(logits, history: [1, 1]) == 2)
        // Log-probability under the penalized logits.
        let penalized = ThresholdSampling.penalized(logits, Self.row(parameters, uniform: 0, counts: counts))
        #expect(abs(sampled.logprob! - (penalized[2] - LogSoftmax.logSumExp(penalized))) < 1e-6)
    }

    @Test func deviceRowCountsThePenaltyWindowAndDrawsFromTheSeed() {
        let parameters = SamplingParameters(temperature: 1, presencePenalty: 0.5, penaltyWindow: 3, seed: 9)
        var a = Sampler(parameters), b = Sampler(parameters)
        let history: [Int32] = [4, 4, 7, 4, 9, 1000]
        let row = a.deviceRow(history: history, vocabulary: 100, wantsLogprob: false)
        #expect(Dictionary(uniqueKeysWithValues: row.penaltyCounts.map { ($0.token, $0.count) }) == [4: 1, 9: 1])  // 1000 is out of range
        #expect(row.uniform == b.deviceRow(history: history, vocabulary: 100, wantsLogprob: false).uniform)
        #expect(a.deviceRow(history: [], vocabulary: 100, wantsLogprob: false).uniform != row.uniform)
    }
}
