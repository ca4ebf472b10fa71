import CPUReference
import CUDA
import Kernels
import Sampling

/// argmax_rows of sampling.cu against `Sampler.argmax`: exact, on random rows with planted ties
/// (the smallest index wins), a NaN, and vocabularies that are not multiples of the block.
enum SamplingChecks {
    static let all = [argmax]

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
}
