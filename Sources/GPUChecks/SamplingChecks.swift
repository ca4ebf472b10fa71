import CPUReference
import CUDA
import GPUBackend
import Kernels
import Sampling

/// argmax_rows of sampling.cu against `Sampler.argmax`: exact, on random rows with planted ties
/// (the smallest index wins), a NaN, and vocabularies that are not multiples of the block.
enum SamplingChecks {
    static let all = [argmax, device]

    static let argmax = GPUCheck("sampling.argmax") { env in
        let kernel = try ArgmaxKernel(library: env.library)
        var covered: [String] = []
        for (rows, vocab) in [(1, 1), (3, 1000), (17, 49_152), (5, 128_256)] {
            var logits = (0..<rows * vocab).map { _ in Float.random(in: -20...20, using: &env.random) }
            for r in 0..<rows where vocab > 3 {
                // A tie for the maximum at two places, and a NaN that must not win.
                // (Never at index 0: the CPU's scan starts from element 0 whatever it is.)
                let a = Int.random(in: 0..<vocab, using: &env.random), b = Int.random(in: 0..<vocab, using: &env.random)
                logits[r * vocab + 1 + a % (vocab - 1)] = .nan
                logits[r * vocab + a] = 25
                logits[r * vocab + b] = 25
            }
            let device = try env.context.allocate(Float.self, count: logits.count)
            try device.copy(from: logits)
            let out = try env.context.allocate(Int32.self, count: rows)
            try kernel(device, vocab: vocab, into: out, on: env.stream)
            try env.stream.synchronize()
            let expected = (0..<rows).map { Sampler.argmax(logits[($0 * vocab)..<(($0 + 1) * vocab)]) }
            try expectEqual(try out.toArray(), expected, "argmax \(rows)x\(vocab)")
            covered.append("\(rows)x\(vocab)")
        }
        return "rows x vocab " + covered.joined(separator: ", ") + " with ties and NaN"
    }

    /// sample_rows and apply_penalties (DeviceSampler) against ThresholdSampling, its CPU reference:
    /// every SamplingParameters filter alone and combined, penalties with greedy and with sampling,
    /// top-k above the vocabulary, vocabularies of 1,000 and 128,256, fresh random logits (normal,
    /// some rows with a planted peak), histories and uniforms each run.
    ///
    /// Tolerances: the penalized logits are bit-exact (the same fp32 operations). Tokens are equal
    /// unless the reference's decision margin is under 1e-5 of the mass (the GPU's expf and fp64
    /// summation order differ in the last bits; such rows are counted, and must stay rare). The
    /// log-probability within 1e-4 absolute (one fp32 rounding of a log-sum-exp over 128K terms is
    /// ~1e-6).
    static let device = GPUCheck("sampling.device") { env in
        let sampler = try DeviceSampler(library: env.library, maxRows: 32)
        let settings: [SamplingParameters] = [
            SamplingParameters(temperature: 0, repetitionPenalty: 1.3, frequencyPenalty: 0.5),
            SamplingParameters(temperature: 0.7, topP: 0.9),
            SamplingParameters(temperature: 1, topK: 50),
            SamplingParameters(temperature: 0.8, minP: 0.05),
            SamplingParameters(temperature: 1.2, presencePenalty: 0.8),
            SamplingParameters(temperature: 0.9, topK: 200, topP: 0.95, minP: 0.02, repetitionPenalty: 1.2),
            SamplingParameters(temperature: 1, topK: 1_000_000, topP: 0.5),
            SamplingParameters(temperature: 0.5, minP: 0.5, frequencyPenalty: 1),
        ]
        var ambiguous = 0, total = 0
        for (rowCount, vocab) in [(12, 1000), (24, 128_256)] {
            var logits: [Float] = []
            var rows: [SamplingRow] = []
            for r in 0..<rowCount {
                let sigma = Float.random(in: 1...5, using: &env.random)
                var row = env.random.gaussians(vocab).map { $0 * sigma }
                if r % 3 == 0 { for _ in 0..<5 { row[Int.random(in: 0..<vocab, using: &env.random)] += 4 * sigma } }
                logits += row
                let history = (0..<40).map { _ in Int32.random(in: 0..<Int32(min(vocab, 300)), using: &env.random) }
                var counts: [Int32: Int32] = [:]
                let parameters = settings[r % settings.count]
                parameters.countPenalized(history, vocabulary: vocab, into: &counts)
                rows.append(SamplingRow(parameters: parameters, uniform: Float.random(in: 0..<1, using: &env.random),
                                        penaltyCounts: counts.map { ($0.key, $0.value) }, wantsLogprob: true))
            }
            let device = try env.context.allocate(Float.self, count: logits.count)
            try device.copy(from: logits)
            let got = try sampler.sample(device, vocab: vocab, rows: rows, on: env.stream)
            let penalized = try device.toArray()
            for r in 0..<rowCount {
                let raw = Array(logits[(r * vocab)..<((r + 1) * vocab)])
                let (expected, margin) = ThresholdSampling.sample(raw, rows[r])
                // The penalties, exactly.
                guard Array(penalized[(r * vocab)..<((r + 1) * vocab)]) == ThresholdSampling.penalized(raw, rows[r]) else {
                    throw CheckFailure("row \(r) of \(vocab): penalized logits differ from the CPU's")
                }
                total += 1
                if got[r].token != expected.token {
                    guard margin < 1e-5 else {
                        throw CheckFailure("row \(r) of \(vocab) (\(rows[r].parameters)): token \(got[r].token), expected \(expected.token) (margin \(margin))")
                    }
                    ambiguous += 1
                    continue
                }
                guard let lp = got[r].logprob, let ref = expected.logprob, abs(lp - ref) <= 1e-4 else {
                    throw CheckFailure("row \(r) of \(vocab): logprob \(got[r].logprob ?? .nan), expected \(expected.logprob ?? .nan)")
                }
            }
        }
        guard ambiguous * 4 <= total else { throw CheckFailure("\(ambiguous) of \(total) rows too close to call") }
        return "\(total) rows (vocab 1000 and 128256, \(settings.count) parameter sets), \(ambiguous) within the rounding margin"
    }
}
