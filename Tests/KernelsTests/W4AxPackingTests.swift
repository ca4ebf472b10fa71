import CPUReference
@testable import Kernels
import Quant
import Testing

/// The packed weight layout, read back the way w4ax_gemm.cu reads it, holds every code of
/// the weight exactly once, at the channel the kernel binds to its activations.
@Suite struct W4AxPackingTests {
    @Test(arguments: [64, 128])
    func kernelReadsEveryCodeOnceWhereItExpectsIt(blockSize: Int) throws {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let (n, k) = (37, blockSize * 3 + 5)  // a partial row tile and a partial K-block
        let layout = try FMPQLayout(inputChannels: k, blockSize: blockSize, int8Blocks: 1)
        let values = (0..<n * k).map { _ in Float.random(in: -1...1, using: &random) }
        let weights = try Int4Weights(roundingToNearest: values, outputs: n, layout: layout)
        let packed = W4AxWeights.pack(weights)
        let tiles = (n + 15) / 16, chunks = blockSize / 64
        #expect(packed.count == tiles * 16 * layout.paddedChannels / 2)

        var seen = Set<Int>()
        for kb in 0..<layout.blockCount {
            for tile in 0..<tiles {
                for lane in 0..<32 {
                    let g = lane / 4, t = lane % 4
                    for s in 0..<blockSize / 32 {
                        for h in 0..<2 {
                            // Kernel: W + ((kb * tiles + tile) * CHUNKS + s / 2) * 32 + lane (uint4s); word (s % 2) * 2 + h.
                            let offset = (((kb * tiles + tile) * chunks + s / 2) * 32 + lane) * 16 + (s % 2) * 8 + h * 4
                            var word: UInt32 = 0
                            for byte in 0..<4 { word |= UInt32(packed[offset + byte]) << (8 * byte) }
                            for j in 0..<4 {
                                let channel = kb * blockSize + (blockSize / 4) * t + 8 * s + 4 * h + j
                                for (row, nibble) in [(tile * 16 + g, 2 * j), (tile * 16 + g + 8, 2 * j + 1)] {
                                    let code = Int8(bitPattern: UInt8(truncatingIfNeeded: word >> (4 * nibble)) << 4) >> 4
                                    let expected = row < n ? Int8(weights.code(output: row, channel: channel)) : 0
                                    #expect(code == expected, "row \(row) channel \(channel)")
                                    #expect(seen.insert(row * layout.paddedChannels + channel).inserted)
                                }
                            }
                        }
                    }
                }
            }
        }
        #expect(seen.count == tiles * 16 * layout.paddedChannels)
    }
}
