import CPUReference
import Foundation
import Quant

/// A generator with a fresh seed each run; the seed goes into failure messages to replay it.
func freshGenerator() -> (random: SplitMix64, seed: UInt64) {
    let seed = UInt64.random(in: 0...UInt64.max)
    return (SplitMix64(seed: seed), seed)
}

/// Activations [tokens, channels] with `outliers` planted channels `factor` times larger than
/// the rest, as LLM activations have (a few channels carry most of the magnitude).
func activationsWithOutliers(tokens: Int, channels: Int, outliers: [Int], factor: Float, using random: inout SplitMix64) -> [Float] {
    let hot = Set(outliers)
    var x = random.gaussians(tokens * channels)
    for t in 0..<tokens {
        for c in hot { x[t * channels + c] *= factor }
    }
    return x
}

/// Y = X·Wᵀ in Float, summing in channel order: x [m, k], w [n, k] -> [m, n].
func matmulTransposed(_ x: [Float], _ w: [Float], m: Int, n: Int, k: Int) -> [Float] {
    var y = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s: Float = 0
            for c in 0..<k { s += x[i * k + c] * w[j * k + c] }
            y[i * n + j] = s
        }
    }
    return y
}

/// Σ (a − b)² in Double.
func squaredDistance(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
}
