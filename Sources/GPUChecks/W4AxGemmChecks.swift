import CPUReference
import CUDA
import Kernels
import Quant

/// w4ax_gemm.cu (small M), w4ax_gemm_sm90.cu (large M, wgmma) and w4ax_gemm_sm80.cu (large
/// M, INT4/INT8 mma.sync) against the exact W4Ax reference (Quant.W4AxLinear).
///
/// Tolerance: |gpu - ref| <= 2^-8 |ref| + 2^-20 * magnitude, where magnitude is the sum of
/// |per-block terms|. The first term is the bf16 rounding of the output (half an ulp is 2^-9
/// relative; doubled for slack); the second covers fp32 sums over blocks taken in another
/// order (each addition rounds by 2^-24 relative, at most a few dozen blocks).
enum W4AxGemmChecks {
    static let all = [shapes, smallMVariants, extremes, largeM, mmaSyncLargeM]

    struct Case: CustomStringConvertible {
        var m: Int, n: Int, k: Int, blockSize: Int, int8Blocks: Int
        var description: String { "M\(m) N\(n) K\(k) bs\(blockSize) a8=\(int8Blocks)" }

        /// A fresh random shape: M and N from the ranges, K up to 3000 (a partial last block
        /// most of the time), any INT8 block count.
        static func random(m: ClosedRange<Int>, n: ClosedRange<Int>, blockSize: Int, using random: inout SplitMix64) -> Case {
            let k = Int.random(in: 1...3000, using: &random)
            return Case(m: Int.random(in: m, using: &random), n: Int.random(in: n, using: &random), k: k, blockSize: blockSize,
                        int8Blocks: Int.random(in: 0...(k + blockSize - 1) / blockSize, using: &random))
        }
    }

    /// Random activations with outlier channels and random weights; M across the m-tile
    /// boundaries, N not a multiple of 16, K with a partial last block.
    static let shapes = GPUCheck("w4ax_gemm.shapes") { env in
        let gemm = try W4AxGemm(library: env.library)
        var cases = [
            Case(m: 1, n: 16, k: 128, blockSize: 128, int8Blocks: 0),
            Case(m: 1, n: 512, k: 576, blockSize: 128, int8Blocks: 1),
            Case(m: 3, n: 200, k: 1024, blockSize: 128, int8Blocks: 2),
            Case(m: 8, n: 64, k: 2048, blockSize: 128, int8Blocks: 3),
            Case(m: 9, n: 48, k: 1536, blockSize: 128, int8Blocks: 2),
            Case(m: 16, n: 96, k: 4096, blockSize: 128, int8Blocks: 5),
            Case(m: 17, n: 40, k: 640, blockSize: 64, int8Blocks: 2),
            Case(m: 32, n: 128, k: 576, blockSize: 64, int8Blocks: 2),
            Case(m: 33, n: 33, k: 384, blockSize: 64, int8Blocks: 1),
            Case(m: 100, n: 80, k: 1024, blockSize: 128, int8Blocks: 1),
            // N of at least 4 tiles per SM selects two n-tiles per warp; a partial last tile.
            Case(m: 3, n: 8470, k: 384, blockSize: 128, int8Blocks: 1),
            Case(m: 20, n: 8452, k: 256, blockSize: 64, int8Blocks: 2),
            Case(m: 40, n: 8464, k: 128, blockSize: 128, int8Blocks: 0),
        ]
        let bs = Bool.random(using: &env.random) ? 64 : 128
        cases.append(.random(m: 1...40, n: 1...300, blockSize: bs, using: &env.random))
        for c in cases { try check(gemm, c, env: &env) }
        return cases.map(\.description).joined(separator: "; ")
    }

    /// Every small-M kernel shape that `SmallMTuning` can fix (1 or 2 n-tiles, 4 or 8 warps), up to
    /// 8 tokens, both block sizes: an odd tile count, K-blocks not a multiple of the warps.
    static let smallMVariants = GPUCheck("w4ax_gemm.small_m_variants") { env in
        var gemm = try W4AxGemm(library: env.library)
        let cases = [
            Case(m: 1, n: 200, k: 1408, blockSize: 128, int8Blocks: 2),
            Case(m: 7, n: 72, k: 640, blockSize: 64, int8Blocks: 3),
            .random(m: 1...8, n: 1...400, blockSize: 128, using: &env.random),
        ]
        for nTiles in [1, 2] {
            for warps in [4, 8] {
                gemm.smallM = try W4AxGemm.SmallMTuning(nTiles: nTiles, warps: warps)
                for c in cases { try check(gemm, c, env: &env) }
            }
        }
        return cases.map(\.description).joined(separator: "; ") + "; each at 1 and 2 n-tiles, 4 and 8 warps"
    }

    /// All-A4 and all-A8 activations at full scale in every block.
    static let extremes = GPUCheck("w4ax_gemm.extremes") { env in
        let gemm = try W4AxGemm(library: env.library)
        let cases = [
            Case(m: 5, n: 64, k: 1024, blockSize: 128, int8Blocks: 0),
            Case(m: 5, n: 64, k: 1024, blockSize: 128, int8Blocks: 8),
            Case(m: 12, n: 32, k: 512, blockSize: 64, int8Blocks: 8),
            // Long K (70B down's 28,672 channels): 28 K-blocks per warp.
            Case(m: 1, n: 4104, k: 28672, blockSize: 128, int8Blocks: 37),
        ]
        for c in cases { try check(gemm, c, env: &env) }
        return cases.map(\.description).joined(separator: "; ")
    }

    /// The large-M kernel (sm_90a): token tiles partly padding, N not a multiple of the 128-row
    /// block or of 16, a partial last K-block, all-A4 and all-A8, M up to 8192.
    static let largeM = GPUCheck("w4ax_gemm.large_m") { env in
        let gemm = try W4AxGemm(library: env.library)
        guard gemm.hasLargeMKernel else { throw CheckSkipped("\(env.library.arch) has no wgmma") }
        return try checkLargeM(gemm, format: .tiled, env: &env)
    }

    /// The sm_8x kernel (INT4 tensor cores), forced on any GPU: on Hopper its s4 mma is emulated,
    /// so this proves the results, not the speed. The large_m shapes, from the 33-token threshold.
    static let mmaSyncLargeM = GPUCheck("w4ax_gemm.mma_sync_large_m") { env in
        try checkLargeM(W4AxGemm(library: env.library, forceMmaSync: true), format: .packedSplitK, env: &env)
    }

    /// Both large-M kernels on the same shape classes, unsplit and split-K; some case must split.
    static func checkLargeM(_ gemm: W4AxGemm, format: Format, env: inout GPUCheckEnvironment) throws -> String {
        var cases = [
            Case(m: 33, n: 16, k: 128, blockSize: 128, int8Blocks: 0),
            Case(m: 64, n: 128, k: 256, blockSize: 128, int8Blocks: 2),
            Case(m: 128, n: 256, k: 1024, blockSize: 128, int8Blocks: 2),
            Case(m: 129, n: 200, k: 600, blockSize: 128, int8Blocks: 1),
            Case(m: 300, n: 4104, k: 512, blockSize: 128, int8Blocks: 4),
            Case(m: 1000, n: 1000, k: 4096, blockSize: 128, int8Blocks: 5),
            Case(m: 8192, n: 136, k: 384, blockSize: 128, int8Blocks: 0),
        ]
        cases.append(.random(m: 33...2000, n: 1...600, blockSize: 128, using: &env.random))
        for c in cases {
            let layout = try FMPQLayout(inputChannels: c.k, blockSize: 128, int8Blocks: c.int8Blocks)
            guard format == .tiled ? gemm.prefersTiled(tokens: c.m, layout: layout) : gemm.prefersMmaSyncLargeM(tokens: c.m, layout: layout) else {
                throw CheckFailure("\(c) would not take the large-M kernel")
            }
            try check(gemm, c, format: format, env: &env)
        }
        let split = cases.map { gemm.splitK(outputs: $0.n, tokens: $0.m, blocks: ($0.k + 127) / 128) }
        guard split.contains(where: { $0 > 1 }) else { throw CheckFailure("no case exercised split-K: \(split)") }
        return cases.map(\.description).joined(separator: "; ") + "; K splits \(split)"
    }

    /// Packed activations without a split-K workspace; tiled or packed activations without and
    /// with one (the large-M kernels split K only when given one).
    enum Format { case packed, packedSplitK, tiled }

    static func check(_ gemm: W4AxGemm, _ c: Case, format: Format = .packed, env: inout GPUCheckEnvironment) throws {
        let layout = try FMPQLayout(inputChannels: c.k, blockSize: c.blockSize, int8Blocks: c.int8Blocks)
        let x = randomValues(c.m * c.k, columns: c.k, outliers: 4, using: &env.random)
        let w = randomValues(c.n * c.k, columns: c.k, outliers: 0, using: &env.random)
        let a = try QuantizedActivations(quantizing: x, tokens: c.m, layout: layout)
        let weights = try Int4Weights(roundingToNearest: w, outputs: c.n, layout: layout)
        let (expected, magnitude) = try W4AxLinear.referenceWithMagnitude(a, weights)

        let dw = try W4AxWeights(weights, context: env.context)
        let y = try env.context.allocate(BFloat16.self, count: c.m * c.n)
        let run: (DeviceBuffer<Float>?) throws -> Void, stream = env.stream
        if format == .tiled {
            let da = try W4AxTiledActivations(a, context: env.context)
            run = { try gemm(da, dw, into: y, workspace: $0, on: stream) }
        } else {
            let da = try W4AxActivations(a, context: env.context)
            run = { try gemm(da, dw, into: y, workspace: $0, on: stream) }
        }
        // Unsplit, then split-K where the kernel would split (poisoned again in between).
        var outputs: [[BFloat16]] = []
        for split in format == .packed ? [false] : [false, true] {
            try y.fill(byte: 0xFF, on: env.stream)  // poison: bf16 0xFFFF is NaN
            let workspace = split ? try gemm.makeSplitKWorkspace(context: env.context, stream: env.stream) : nil
            try run(workspace)
            try env.stream.synchronize()
            outputs.append(try y.toArray())
            // The workspace is left zeroed for the next call.
            if let workspace, try !workspace.toArray().allSatisfy({ $0 == 0 }) {
                throw CheckFailure("\(c): split-K workspace not zeroed after use")
            }
        }
        for got in outputs { try compare(got, expected, magnitude, c) }
    }

    static func compare(_ got: [BFloat16], _ expected: [Float], _ magnitude: [Float], _ c: Case) throws {
        for i in got.indices {
            let g = got[i].float, e = expected[i]
            let tolerance = abs(e) / 256 + magnitude[i] / Float(1 << 20)
            guard g.isFinite, abs(g - e) <= tolerance else {
                throw CheckFailure("\(c): Y[\(i / c.n), \(i % c.n)] = \(g), expected \(e) (tolerance \(tolerance))")
            }
        }
    }

    /// Uniform values in [-1, 1], with `outliers` columns 30x larger, like real activations.
    static func randomValues(_ count: Int, columns: Int, outliers: Int, using random: inout SplitMix64) -> [Float] {
        let hot = Set((0..<outliers).map { _ in Int.random(in: 0..<columns, using: &random) })
        return (0..<count).map { i in Float.random(in: -1...1, using: &random) * (hot.contains(i % columns) ? 30 : 1) }
    }
}
