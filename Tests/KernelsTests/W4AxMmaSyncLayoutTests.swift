import CPUReference
@testable import Kernels
import Quant
import Testing

/// The sm_8x large-M kernel's operands (w4ax_gemm_sm80.cu), assembled the way its lanes build
/// mma fragments from W4AxWeights' layout and the packed activations, then contracted as the
/// PTX ISA defines m16n8k64.s4 and m16n8k32.s8: every block's exact integer dot product.
@Suite struct W4AxMmaSyncLayoutTests {
    /// Nibble `i` of `word` as a signed 4-bit value.
    static func signedNibble(_ word: UInt32, _ i: Int) -> Int32 {
        let v = Int32((word >> (4 * UInt32(i))) & 0xF)
        return v >= 8 ? v - 16 : v
    }

    /// Byte `j` of `word` as int8.
    static func signedByte(_ word: UInt32, _ j: Int) -> Int32 { Int32(Int8(bitPattern: UInt8(truncatingIfNeeded: word >> (8 * UInt32(j))))) }

    /// The kernel's unzip_row: nibbles 0, 2, 4, 6 (even) or 1, 3, 5, 7 of x, then of y.
    static func unzipRow(_ x: UInt32, _ y: UInt32, even: Bool) -> UInt32 {
        var out: UInt32 = 0
        for (i, source) in [x, x, x, x, y, y, y, y].enumerated() {
            out |= ((source >> (4 * UInt32(2 * (i % 4) + (even ? 0 : 1)))) & 0xF) << (4 * UInt32(i))
        }
        return out
    }

    static func word(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }

    @Test func fragmentsContractToTheExactBlockProducts() throws {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let (m, n, k) = (21, 37, 128 * 4 + 9)  // partial row tile and last K-block
        let layout = try FMPQLayout(inputChannels: k, blockSize: 128, int8Blocks: 2)
        let x = (0..<m * k).map { _ in Float.random(in: -1...1, using: &random) * (Bool.random(using: &random) ? 1 : 20) }
        let a = try QuantizedActivations(quantizing: x, tokens: m, layout: layout)
        let w = (0..<n * k).map { _ in Float.random(in: -1...1, using: &random) }
        let weights = try Int4Weights(roundingToNearest: w, outputs: n, layout: layout)
        let packed = W4AxWeights.pack(weights)
        let tiles = (n + 15) / 16
        let row4 = layout.int4Channels / 2, row8 = layout.int8Channels

        // Lane (g, t)'s 16-byte chunk `chunk` of n-tile `tile` in K-block kb, as 4 words.
        func weightChunk(_ kb: Int, tile: Int, chunk: Int, lane: Int) -> [UInt32] {
            let offset = (((kb * tiles + tile) * 2 + chunk) * 32 + lane) * 16
            return (0..<4).map { Self.word(packed, at: offset + 4 * $0) }
        }
        // A lane's activation words: A4, 16 bytes at 16t of the token row; A8, chunk 2t + c.
        func a4Words(token: Int, kb: Int, t: Int) -> [UInt32] {
            let base = token * row4 + kb * 64 + 16 * t
            return (0..<4).map { i in (0..<4).reduce(UInt32(0)) { $0 | UInt32(a.int4[base + 4 * i + $1]) << (8 * UInt32($1)) } }
        }
        func a8Words(token: Int, kb: Int, t: Int, chunk: Int) -> [UInt32] {
            let base = token * row8 + (kb - layout.int4Blocks) * 128 + 32 * t + 16 * chunk
            return (0..<4).map { i in (0..<4).reduce(UInt32(0)) { $0 | UInt32(UInt8(bitPattern: a.int8[base + 4 * i + $1])) << (8 * UInt32($1)) } }
        }

        for kb in 0..<layout.blockCount {
            let is8 = kb >= layout.int4Blocks
            for tile in 0..<tiles {
                for token0 in stride(from: 0, to: m, by: 8) {
                    // D[r][c] over the block's mma steps; A[r][kk] from lane (r % 8, kk % 32 / per-lane width).
                    var d = [[Int32]](repeating: [Int32](repeating: 0, count: 8), count: 16)
                    for step in 0..<(is8 ? 4 : 2) {
                        for r in 0..<16 {
                            for c in 0..<8 where token0 + c < m {
                                for kk in 0..<(is8 ? 32 : 64) {
                                    let t = is8 ? kk % 16 / 4 : kk % 32 / 8
                                    let wLane = (r % 8) * 4 + t, aLane = c * 4 + t
                                    let av: Int32, bv: Int32
                                    if is8 {
                                        // a0/a1: word (step % 2) * 2 of chunk step / 2, a2/a3: the next; rows g, g + 8.
                                        let ws = weightChunk(kb, tile: tile, chunk: step / 2, lane: wLane)
                                        let wword = ws[(step % 2) * 2 + kk / 16]
                                        let widened = r < 8 ? (wword << 4) & 0xF0F0_F0F0 : wword & 0xF0F0_F0F0
                                        av = Self.signedByte(widened, kk % 4)
                                        let act = a8Words(token: token0 + c, kb: kb, t: t, chunk: step / 2)
                                        bv = Self.signedByte(act[(step % 2) * 2 + kk / 16], kk % 4)
                                    } else {
                                        let ws = weightChunk(kb, tile: tile, chunk: step, lane: wLane)
                                        let pair = kk < 32 ? (ws[0], ws[1]) : (ws[2], ws[3])
                                        av = Self.signedNibble(Self.unzipRow(pair.0, pair.1, even: r < 8), kk % 8)
                                        bv = Self.signedNibble(a4Words(token: token0 + c, kb: kb, t: t)[2 * step + kk / 32], kk % 8)
                                    }
                                    d[r][c] += av * bv
                                }
                            }
                        }
                    }
                    for r in 0..<16 where tile * 16 + r < n {
                        for c in 0..<8 where token0 + c < m {
                            var expected: Int32 = 0
                            for ch in kb * 128..<(kb + 1) * 128 {
                                expected += Int32(weights.code(output: tile * 16 + r, channel: ch)) * a.code(token: token0 + c, channel: ch)
                            }
                            #expect(d[r][c] == (is8 ? 16 : 1) * expected, "block \(kb) row \(tile * 16 + r) token \(token0 + c)")
                        }
                    }
                }
            }
        }
    }
}
