import CPUReference
import Quant
import Testing

@Suite struct ActivationQuantizationTests {
    @Test func permutationMovesChannelsAndIdentityChangesNothing() throws {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let (m, k) = (3, 200)
        let layout = try FMPQLayout(inputChannels: k, int8Blocks: 1)
        let x = randomMatrix(m, k, using: &random)
        let identity = (0..<Int32(k)).map { $0 }
        #expect(try ActivationQuantization.permuted(x, tokens: m, permutation: identity, layout: layout)
            == QuantizedActivations(quantizing: x, tokens: m, layout: layout))
        let reversed = Array(identity.reversed())
        let q = try ActivationQuantization.permuted(x, tokens: m, permutation: reversed, layout: layout)
        let back = q.dequantized(), kp = layout.paddedChannels
        for t in 0..<m {
            for p in 0..<k {
                let scale = q.scales[t * layout.blockCount + p / 128]
                #expect(abs(back[t * kp + p] - x[t * k + Int(reversed[p])]) <= scale / 2 * 1.0001)
            }
        }
    }

    @Test func rmsNormQuantizesTheNormalizedRow() throws {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let (m, k) = (2, 300)
        let layout = try FMPQLayout(inputChannels: k, blockSize: 64, int8Blocks: 2)
        let x = randomMatrix(m, k, using: &random)
        let gamma = (0..<k).map { _ in Float.random(in: 0.5...1.5, using: &random) }
        var permutation = (0..<Int32(k)).map { $0 }
        permutation.shuffle(using: &random)
        let q = try ActivationQuantization.rmsNorm(x, tokens: m, gamma: gamma, eps: 1e-6, permutation: permutation, layout: layout)
        let back = q.dequantized(), kp = layout.paddedChannels
        for t in 0..<m {
            let rms = (x[t * k..<(t + 1) * k].reduce(0) { $0 + $1 * $1 } / Float(k) + 1e-6).squareRoot()
            for p in 0..<k {
                let c = Int(permutation[p])
                let expected = x[t * k + c] / rms * gamma[c]
                let scale = q.scales[t * layout.blockCount + p / 64]
                #expect(abs(back[t * kp + p] - expected) <= scale / 2 * 1.001 + 1e-5 * abs(expected))
            }
        }
    }

    @Test func swiGLUAppliesSiluToTheGateHalf() throws {
        let layout = try FMPQLayout(inputChannels: 64, blockSize: 64, int8Blocks: 1)
        // gate = 0 gives silu 0; gate large gives ~gate; one row, up = 1.
        var gateUp = [Float](repeating: 1, count: 128)
        for c in 0..<64 { gateUp[c] = c == 5 ? 20 : 0 }
        let q = try ActivationQuantization.swiGLU(gateUp, tokens: 1, permutation: (0..<64).map { $0 }, layout: layout)
        #expect(q.code(token: 0, channel: 5) == 127 && abs(q.scales[0] - 20 / 127) < 1e-5)
        #expect((0..<64).filter { $0 != 5 }.allSatisfy { q.code(token: 0, channel: $0) == 0 })
    }

    @Test func refusesWhatIsNotAPermutation() throws {
        let layout = try FMPQLayout(inputChannels: 4, blockSize: 64, int8Blocks: 0)
        #expect(throws: QuantError.self) {
            try ActivationQuantization.permuted([1, 2, 3, 4], tokens: 1, permutation: [0, 1, 1, 3], layout: layout)
        }
        #expect(throws: QuantError.self) {
            try ActivationQuantization.permuted([1, 2, 3, 4], tokens: 1, permutation: [0, 1, 2], layout: layout)
        }
    }
}
