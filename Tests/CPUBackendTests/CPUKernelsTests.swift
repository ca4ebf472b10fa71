@testable import CPUBackend
import Model
import Testing

/// The kernels against plain loops, on shapes with every tail (not multiples of 4 rows or 8 columns).
struct CPUKernelsTests {
    /// Deterministic values in [-1, 1).
    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
        }
    }

    @Test(arguments: [(1, 1, 1), (3, 13, 7), (5, 40, 21), (2, 576, 64), (9, 17, 130)])
    func matmulMatchesLoops(tokens: Int, inDim: Int, outDim: Int) {
        let x = Self.values(tokens * inDim, seed: 1), w = Self.values(outDim * inDim, seed: 2)
        let start = Self.values(tokens * outDim, seed: 3)
        for threads in [1, 3] {
            for accumulate in [false, true] {
                var y = start
                x.withUnsafeBufferPointer { xp in
                    w.withUnsafeBufferPointer { wp in
                        y.withUnsafeMutableBufferPointer { yp in
                            CPUKernels.matmul(xp.baseAddress!, xStride: inDim, tokens: tokens, wp.baseAddress!, inDim: inDim,
                                              outDim: outDim, yp.baseAddress!, yStride: outDim, accumulate: accumulate,
                                              parallel: ParallelLoop(threads: threads))
                        }
                    }
                }
                for t in 0..<tokens {
                    for o in 0..<outDim {
                        var expected = accumulate ? Double(start[t * outDim + o]) : 0
                        for i in 0..<inDim { expected += Double(x[t * inDim + i]) * Double(w[o * inDim + i]) }
                        #expect(abs(Double(y[t * outDim + o]) - expected) <= 1e-4 * Double(inDim).squareRoot(),
                                "y[\(t), \(o)] threads \(threads) accumulate \(accumulate)")
                    }
                }
            }
        }
    }

    @Test func rmsNormAndSoftmax() {
        var x: [Float] = [1, -2, 3, -4, 5]
        let weight: [Float] = [1, 1, 2, 1, 0.5]
        var out = [Float](repeating: 0, count: 5)
        CPUKernels.rmsNorm(x, tokens: 1, dim: 5, weight: weight, epsilon: 0, into: &out)
        let rms = (55 / 5 as Float).squareRoot()
        #expect(zip(out, [1 / rms, -2 / rms, 6 / rms, -4 / rms, 2.5 / rms]).allSatisfy { abs($0 - $1) < 1e-6 })
        CPUKernels.softmax(&x, count: 5)
        #expect(abs(x.reduce(0, +) - 1) < 1e-6)
        #expect(x.firstIndex(of: x.max()!) == 4)
    }

    static func config(_ convention: RoPEConvention, scaling: RoPEScaling = .none) -> ModelConfig {
        ModelConfig(vocabularySize: 8, dim: 16, layerCount: 1, headCount: 2, kvHeadCount: 1, headDim: 8, ffnDim: 8,
                    ropeBase: 10_000, ropeScaling: scaling, ropeConvention: convention, contextLength: 64)
    }

    /// Rotates one row of `heads` heads at `position`.
    static func rotate(_ x: [Float], _ rope: RotaryEmbedding, position: Int, heads: Int = 2) -> [Float] {
        var x = x
        var cos = [Float](repeating: 0, count: rope.rotatedDims / 2), sin = cos
        rope.fillTables(firstPosition: position, tokens: 1, cos: &cos, sin: &sin)
        rope.apply(&x, rowStride: x.count, tokens: 1, heads: heads, cos: cos, sin: sin)
        return x
    }

    @Test func ropeConventionsPairDifferentChannels() throws {
        let adjacent = try RotaryEmbedding(config: Self.config(.adjacentPairs))
        let halves = try RotaryEmbedding(config: Self.config(.halves))
        let x = Self.values(16, seed: 5)
        // Position 0 is the identity; rotations keep each head's norm.
        #expect(Self.rotate(x, adjacent, position: 0) == x)
        let rotated = Self.rotate(x, adjacent, position: 7)
        for h in 0..<2 {
            let before = x[(h * 8)..<(h * 8 + 8)].reduce(0) { $0 + $1 * $1 }
            let after = rotated[(h * 8)..<(h * 8 + 8)].reduce(0) { $0 + $1 * $1 }
            #expect(abs(before - after) < 1e-5)
        }
        // Pair i is (2i, 2i+1) in one convention and (i, i+4) in the other: permuting each head's
        // channels from one order to the other turns one rotation into the other.
        let order = [0, 2, 4, 6, 1, 3, 5, 7]  // halves position j holds adjacent channel order[j]
        func toHalves(_ v: [Float]) -> [Float] { (0..<16).map { v[($0 / 8) * 8 + order[$0 % 8]] } }
        let viaHalves = Self.rotate(toHalves(x), halves, position: 7)
        #expect(zip(viaHalves, toHalves(rotated)).allSatisfy { abs($0 - $1) < 1e-5 })
    }

    @Test func ropeScaling() throws {
        let plain = try RotaryEmbedding(config: Self.config(.adjacentPairs))
        let linear = try RotaryEmbedding(config: Self.config(.adjacentPairs, scaling: .linear(factor: 4)))
        let x = Self.values(16, seed: 9)
        // Linear scaling by 4 at position 12 is position 3 unscaled.
        #expect(zip(Self.rotate(x, linear, position: 12), Self.rotate(x, plain, position: 3)).allSatisfy { abs($0 - $1) < 1e-5 })
        // Llama 3.1 frequency factors divide each pair's frequency.
        let factors: [Float] = [1, 2, 4, 8]
        let llama31 = try RotaryEmbedding(config: Self.config(.adjacentPairs, scaling: .frequencyFactors(tensor: "rope_freqs.weight")),
                                          frequencyFactors: factors)
        for i in 0..<4 { #expect(abs(llama31.frequencies[i] * Double(factors[i]) - plain.frequencies[i]) < 1e-12) }
        #expect(throws: CPUBackendError.self) {
            try RotaryEmbedding(config: Self.config(.adjacentPairs, scaling: .yarn(factor: 2, originalContextLength: 32)))
        }
    }

    @Test func perplexityWindows() {
        typealias W = PerplexityEvaluator.Window
        // Disjoint windows: every token but each window's first is scored.
        #expect(PerplexityEvaluator.windows(count: 10, context: 4, stride: 4)
            == [W(tokens: 0..<4, scored: 1..<4), W(tokens: 4..<8, scored: 5..<8), W(tokens: 8..<10, scored: 9..<10)])
        // Overlapping windows score each token once, with more context.
        #expect(PerplexityEvaluator.windows(count: 8, context: 4, stride: 2)
            == [W(tokens: 0..<4, scored: 1..<4), W(tokens: 2..<6, scored: 4..<6), W(tokens: 4..<8, scored: 6..<8)])
        let scored = PerplexityEvaluator.windows(count: 1000, context: 64, stride: 16).flatMap { Array($0.scored) }
        #expect(scored == Array(1..<1000))
    }
}
