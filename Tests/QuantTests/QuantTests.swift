import CPUReference
import Quant
import Testing

/// Fresh random values each run, with a few large "outlier" channels, like real activations.
func randomMatrix(_ rows: Int, _ cols: Int, using random: inout SplitMix64, outliers: Int = 3) -> [Float] {
    let hot = Set((0..<outliers).map { _ in Int.random(in: 0..<cols, using: &random) })
    return (0..<rows * cols).map { i in
        let scale: Float = hot.contains(i % cols) ? 40 : 1
        return Float.random(in: -1...1, using: &random) * scale
    }
}

@Suite struct FMPQLayoutTests {
    @Test func countsAPartialLastBlock() throws {
        let layout = try FMPQLayout(inputChannels: 576, blockSize: 128, int8Blocks: 1)  // SmolLM2: 4.5 blocks
        #expect(layout.blockCount == 5 && layout.paddedChannels == 640)
        #expect(layout.int4Blocks == 4 && layout.int4Channels == 512 && layout.int8Channels == 128)
        #expect(layout.int8Share == 0.2 && layout.isInt8(block: 4) && !layout.isInt8(block: 3))
    }

    @Test func rejectsBadLayouts() {
        #expect(throws: QuantError.self) { try FMPQLayout(inputChannels: 0, int8Blocks: 0) }
        #expect(throws: QuantError.self) { try FMPQLayout(inputChannels: 256, blockSize: 96, int8Blocks: 0) }
        #expect(throws: QuantError.self) { try FMPQLayout(inputChannels: 256, int8Blocks: 3) }
    }
}

@Suite struct QuantizerTests {
    @Test func nibblesRoundTripEveryPair() {
        for low in Int8(-8)...7 {
            for high in Int8(-8)...7 {
                let byte = Nibbles.pack(low: low, high: high)
                #expect(Nibbles.low(byte) == low && Nibbles.high(byte) == high)
            }
        }
    }

    /// Every element comes back within half a step of its block's grid.
    @Test(arguments: [64, 128])
    func activationRoundTripIsWithinHalfAStep(blockSize: Int) throws {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let k = blockSize * 3 + blockSize / 2
        let layout = try FMPQLayout(inputChannels: k, blockSize: blockSize, int8Blocks: 1)
        let tokens = 5
        let x = randomMatrix(tokens, k, using: &random)
        let q = try QuantizedActivations(quantizing: x, tokens: tokens, layout: layout)
        let back = q.dequantized()
        let kp = layout.paddedChannels
        for t in 0..<tokens {
            for c in 0..<kp {
                let scale = q.scales[t * layout.blockCount + c / blockSize]
                let original = c < k ? x[t * k + c] : 0
                #expect(abs(back[t * kp + c] - original) <= scale / 2 * 1.0001, "token \(t) channel \(c)")
                if !layout.isInt8(block: c / blockSize) { #expect(abs(q.code(token: t, channel: c)) <= 7) }
            }
        }
        // INT8 blocks are 127/7 times finer than INT4 blocks of the same range.
        #expect(q.scales.allSatisfy { $0 > 0 })
    }

    /// A4 clipping (FMPQLayout.int4Clip): A4 scales are exactly (abs-max * clip) / 7, values
    /// inside the clipped range come back within half a step, values past it saturate at +-7;
    /// A8 blocks are not clipped.
    @Test(arguments: [Float(0.8), 0.55])
    func clippedA4BlocksSaturateOnlyPastTheClip(clip: Float) throws {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let k = 128 * 4 + 40, tokens = 6
        let layout = try FMPQLayout(inputChannels: k, blockSize: 128, int8Blocks: 1, int4Clip: clip)
        let x = randomMatrix(tokens, k, using: &random)
        let q = try QuantizedActivations(quantizing: x, tokens: tokens, layout: layout)
        let back = q.dequantized()
        var saturated = 0
        for t in 0..<tokens {
            for b in 0..<layout.blockCount {
                let channels = (b * 128)..<min((b + 1) * 128, k)
                let absmax = channels.map { abs(x[t * k + $0]) }.max()!
                let scale = q.scales[t * layout.blockCount + b]
                let int8 = layout.isInt8(block: b)
                #expect(scale == absmax * (int8 ? 1 : clip) / (int8 ? 127 : 7), "token \(t) block \(b)")
                for c in channels {
                    let v = x[t * k + c], code = q.code(token: t, channel: c)
                    if !int8 && abs(v) > 7.5 * scale {
                        #expect(abs(code) == 7 && (code > 0) == (v > 0), "token \(t) channel \(c): \(v) past the clip")
                        saturated += 1
                    } else {
                        #expect(abs(back[t * layout.paddedChannels + c] - v) <= scale / 2 * 1.0001, "token \(t) channel \(c)")
                    }
                }
            }
        }
        #expect(saturated > 0, "the clip saturated nothing: the test saw no clipped value")
        #expect(throws: QuantError.self) { try FMPQLayout(inputChannels: 256, int8Blocks: 0, int4Clip: 0) }
        #expect(throws: QuantError.self) { try FMPQLayout(inputChannels: 256, int8Blocks: 0, int4Clip: 1.1) }
    }

    @Test func weightRoundTripIsWithinHalfAStep() throws {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let (n, k) = (7, 200)
        let layout = try FMPQLayout(inputChannels: k, int8Blocks: 0)
        let w = randomMatrix(n, k, using: &random, outliers: 0)
        let q = try Int4Weights(roundingToNearest: w, outputs: n, layout: layout)
        for row in 0..<n {
            for c in 0..<k {
                let scale = q.scale(output: row, block: c / 128)
                let value = Float(q.code(output: row, channel: c)) * scale
                // fp16 rounding of the scale can push the extreme element one clamp past half a step.
                #expect(abs(value - w[row * k + c]) <= scale / 2 + 7 * scale * 0.001)
            }
            for c in k..<layout.paddedChannels { #expect(q.code(output: row, channel: c) == 0) }
        }
    }

    @Test func allZeroBlocksGiveZeroCodesAndNoNaN() throws {
        let layout = try FMPQLayout(inputChannels: 128, int8Blocks: 0)
        let q = try QuantizedActivations(quantizing: [Float](repeating: 0, count: 256), tokens: 2, layout: layout)
        #expect(q.scales == [0, 0] && q.int4.allSatisfy { $0 == 0 })
        #expect(q.dequantized().allSatisfy { $0 == 0 })
    }

    @Test func shapeMismatchesAreRefused() throws {
        let layout = try FMPQLayout(inputChannels: 128, int8Blocks: 0)
        #expect(throws: QuantError.self) { try QuantizedActivations(quantizing: [1, 2, 3], tokens: 1, layout: layout) }
        #expect(throws: QuantError.self) { try Int4Weights(roundingToNearest: [1], outputs: 1, layout: layout) }
    }
}

@Suite struct W4AxLinearTests {
    /// The integer-per-block reference equals a float64 GEMM of the dequantized operands to
    /// fp32 rounding: tolerance 1e-5 of the sum of |terms| (fp32 has 2^-24 = 6e-8 relative
    /// error per operation; 5 blocks of promotions and sums stay far below 1e-5).
    @Test func matchesAFloat64GemmOfTheDequantizedOperands() throws {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let (m, n, k) = (3, 9, 576)
        let layout = try FMPQLayout(inputChannels: k, int8Blocks: 1)
        let a = try QuantizedActivations(quantizing: randomMatrix(m, k, using: &random), tokens: m, layout: layout)
        let w = try Int4Weights(roundingToNearest: randomMatrix(n, k, using: &random, outliers: 0), outputs: n, layout: layout)
        let y = try W4AxLinear.reference(a, w)
        let ad = a.dequantized(), kp = layout.paddedChannels
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0.0, magnitude = 0.0
                for c in 0..<kp {
                    let term = Double(ad[i * kp + c]) * Double(Float(w.code(output: j, channel: c)) * w.scale(output: j, block: c / 128))
                    exact += term
                    magnitude += abs(term)
                }
                #expect(abs(Double(y[i * n + j]) - exact) <= 1e-5 * magnitude, "y[\(i), \(j)]")
            }
        }
    }

    @Test func refusesMismatchedLayouts() throws {
        let a = try QuantizedActivations(quantizing: [Float](repeating: 1, count: 256), tokens: 1, layout: FMPQLayout(inputChannels: 256, int8Blocks: 1))
        let w = try Int4Weights(roundingToNearest: [Float](repeating: 1, count: 256), outputs: 1, layout: FMPQLayout(inputChannels: 256, int8Blocks: 0))
        #expect(throws: QuantError.self) { try W4AxLinear.reference(a, w) }
    }
}
