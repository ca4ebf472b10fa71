import CPUReference
@testable import Kernels
import Quant
import Testing

/// The large-M kernel's operands, read back the way w4ax_gemm_sm90.cu and wgmma read them:
/// the weights' A fragments (registers, widened) against the tiled activation image (shared
/// memory, 128-byte swizzle) give every block's exact integer dot product.
@Suite struct W4AxTiledLayoutTests {
    @Test func wgmmaOperandsContractToTheExactBlockProducts() throws {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let (m, n, k) = (131, 37, 128 * 3 + 5)  // a second, partial token tile; partial row tile and K-block
        let layout = try FMPQLayout(inputChannels: k, blockSize: 128, int8Blocks: 1)
        let x = (0..<m * k).map { _ in Float.random(in: -1...1, using: &random) * (Bool.random(using: &random) ? 1 : 20) }
        let a = try QuantizedActivations(quantizing: x, tokens: m, layout: layout)
        let w = (0..<n * k).map { _ in Float.random(in: -1...1, using: &random) }
        let weights = try Int4Weights(roundingToNearest: w, outputs: n, layout: layout)
        let packed = W4AxWeights.pack(weights)
        let image = try W4AxTiledActivations.image(of: a)
        let tiles = (n + 15) / 16, blocks = layout.blockCount
        #expect(image.codes.count == 2 * blocks * 128 * 128 && image.scales.count == 2 * blocks * 128)

        // Weight code of (row, step, k) as the kernel widens it: register a[step][0..3] of lane (g, t).
        func widened(_ kb: Int, row: Int, step: Int, k: Int) -> Int32 {
            let tile = row / 16, g = row % 16 % 8, upper = row % 16 / 8, t = k % 16 / 4, j = k % 4, h = k / 16
            let lane = g * 4 + t
            let offset = ((((kb * tiles + tile) * 2 + step / 2) * 32 + lane) * 16) + (step % 2) * 8 + h * 4
            var word: UInt32 = 0
            for byte in 0..<4 { word |= UInt32(packed[offset + byte]) << (8 * byte) }
            let register = upper == 0 ? (word << 4) & 0xF0F0_F0F0 : word & 0xF0F0_F0F0
            return Int32(Int8(bitPattern: UInt8(truncatingIfNeeded: register >> (8 * j))))
        }
        // Activation code of (token, step, k) as wgmma reads the swizzled tile.
        func activation(_ kb: Int, token: Int, step: Int, k: Int) -> Int32 {
            let row = token % 128, p = 32 * step + k
            let offset = ((token / 128) * blocks + kb) * 16384 + row * 128 + ((p / 16) ^ (row % 8)) * 16 + p % 16
            return Int32(image.codes[offset])
        }
        for kb in 0..<blocks {
            for token in stride(from: 0, to: m, by: 7) {
                #expect(image.scales[((token / 128) * blocks + kb) * 128 + token % 128] == a.scales[token * blocks + kb])
                for row in 0..<n {
                    var got: Int32 = 0
                    for step in 0..<4 {
                        for kk in 0..<32 { got += widened(kb, row: row, step: step, k: kk) * activation(kb, token: token, step: step, k: kk) }
                    }
                    var expected: Int32 = 0
                    for c in kb * 128..<(kb + 1) * 128 {
                        expected += 16 * Int32(weights.code(output: row, channel: c)) * a.code(token: token, channel: c)
                    }
                    #expect(got == expected, "token \(token) row \(row) block \(kb)")
                }
            }
        }
        // Padding rows of the last tile are zero codes with zero scales.
        for row in m % 128..<128 {
            #expect(image.scales[(1 * blocks) * 128 + row] == 0)
            #expect(image.codes[(1 * blocks) * 16384 + row * 128..<(1 * blocks) * 16384 + (row + 1) * 128].allSatisfy { $0 == 0 })
        }
    }

    @Test func blockSize64HasNoTiledFormat() throws {
        let layout = try FMPQLayout(inputChannels: 256, blockSize: 64, int8Blocks: 1)
        let a = try QuantizedActivations(quantizing: [Float](repeating: 0.5, count: 256), tokens: 1, layout: layout)
        #expect(throws: QuantError.self) { _ = try W4AxTiledActivations.image(of: a) }
    }
}
