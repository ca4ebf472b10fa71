import CPUReference
import CUDA
import Kernels
import Quant

/// fmpq_quantize.cu against Quant.ActivationQuantization.
///
/// Rotated blocks (`FMPQLayout.rotation`) are the same fp32 butterflies on both sides,
/// so they change none of these tolerances.
///
/// Tolerance: scales within 1e-5 relative; codes equal except where the GPU's fp32 sum order
/// (RMSNorm) or expf (SwiGLU, 2 ulp) moves a value across a rounding boundary: then by one
/// step, at most max(2, 1 in 10^4) codes. Copy and permutation alone (permute_quantize) must
/// match exactly. The tiled format (128-channel blocks) must hold exactly the packed output's
/// codes and scales, rearranged as W4AxTiledActivations.image says, with zero padding rows.
enum FMPQQuantizeChecks {
    static let all = [rmsNorm, swiGLU, permuted]

    struct Case: CustomStringConvertible {
        var m: Int, k: Int, blockSize: Int, int8Blocks: Int, int4Clip: Float = 1, rotation = BlockRotation.none
        var description: String {
            "M\(m) K\(k) bs\(blockSize) a8=\(int8Blocks)" + (int4Clip < 1 ? " clip \(int4Clip)" : "") + (rotation != .none ? " rotated \(rotation)" : "")
        }
        var layout: FMPQLayout {
            get throws { try FMPQLayout(inputChannels: k, blockSize: blockSize, int8Blocks: int8Blocks, int4Clip: int4Clip, rotation: rotation) }
        }
    }

    static let cases = [
        Case(m: 1, k: 576, blockSize: 128, int8Blocks: 1),
        Case(m: 7, k: 4096, blockSize: 128, int8Blocks: 5, int4Clip: 0.8),  // A4 scales clipped (saturated codes)
        Case(m: 130, k: 1024, blockSize: 128, int8Blocks: 2, int4Clip: 0.85),  // two token tiles, the second mostly padding
        Case(m: 33, k: 1000, blockSize: 64, int8Blocks: 3, int4Clip: 0.7),
        // Hadamard-rotated blocks (BlockHadamard): A4 ones 128 and 64 wide, packed and tiled, a
        // partial last A4 block that stays unrotated (a8=0), and every block (rotation all).
        Case(m: 9, k: 4096, blockSize: 128, int8Blocks: 5, int4Clip: 0.8, rotation: .int4),
        Case(m: 129, k: 1024, blockSize: 128, int8Blocks: 1, int4Clip: 0.8, rotation: .int4),
        Case(m: 17, k: 1000, blockSize: 64, int8Blocks: 2, int4Clip: 0.9, rotation: .int4),
        Case(m: 5, k: 576, blockSize: 128, int8Blocks: 0, rotation: .int4),
        Case(m: 3, k: 1100, blockSize: 128, int8Blocks: 3, rotation: .all),  // A8 blocks too; the partial last one not
        Case(m: 3, k: 14336, blockSize: 128, int8Blocks: 18),  // Llama-3-8B down_proj: a row split over 14 blocks
        Case(m: 2, k: 28672, blockSize: 64, int8Blocks: 72),   // Llama-3-70B FFN width, 56 blocks per row
        // At least one row per SM (132 on Hopper): one block per row, the row staged in shared
        // memory (56 and 112 KiB: the opt-in limit), and gathered from global memory past it.
        Case(m: 150, k: 14336, blockSize: 128, int8Blocks: 18, rotation: .int4),
        Case(m: 133, k: 28672, blockSize: 64, int8Blocks: 72),
        Case(m: 140, k: 61440, blockSize: 128, int8Blocks: 40),
    ]

    static let rmsNorm = GPUCheck("fmpq_quantize.rmsnorm") { env in
        let kernels = try FMPQQuantize(library: env.library)
        for c in cases {
            let layout = try c.layout
            let x = bf16Values(c.m * c.k, columns: c.k, using: &env.random)
            let gamma = (0..<c.k).map { _ in Float.random(in: 0.5...1.5, using: &env.random) }
            let permutation = randomPermutation(c.k, using: &env.random)
            let expected = try ActivationQuantization.rmsNorm(x, tokens: c.m, gamma: gamma, eps: 1e-5, permutation: permutation, layout: layout)
            let output = try poisoned(layout, tokens: c.m, env: env)
            let (dx, dgamma, dperm) = try (upload(x.map(BFloat16.init), env), upload(gamma, env), upload(permutation, env))
            try kernels.rmsNorm(dx, gamma: dgamma, eps: 1e-5, permutation: dperm, into: output, on: env.stream)
            try env.stream.synchronize()
            try compare(output.toHost(), expected, c, roundingSlack: true)
            try compareTiled(output, c, env: env) { try kernels.rmsNorm(dx, gamma: dgamma, eps: 1e-5, permutation: dperm, into: $0, on: env.stream) }

            // The residual add fused in: the norm of bf16(x + added), the sum written exactly.
            let added = bf16Values(c.m * c.k, columns: c.k, using: &env.random)
            let summed = zip(x, added).map { BFloat16($0 + $1) }
            let expectedSum = try ActivationQuantization.rmsNorm(
                summed.map(\.float), tokens: c.m, gamma: gamma, eps: 1e-5, permutation: permutation, layout: layout)
            let residual = try FusedResidualAdd(added: upload(added.map(BFloat16.init), env), sum: env.context.allocate(BFloat16.self, count: c.m * c.k))
            try residual.sum.fill(byte: 0xFF, on: env.stream)
            let fused = try poisoned(layout, tokens: c.m, env: env)
            try kernels.rmsNorm(dx, gamma: dgamma, eps: 1e-5, permutation: dperm, adding: residual, into: fused, on: env.stream)
            try env.stream.synchronize()
            try compare(fused.toHost(), expectedSum, c, roundingSlack: true)
            let sum = try residual.sum.toArray()
            if let i = sum.indices.first(where: { sum[$0].bits != summed[$0].bits }) {
                throw CheckFailure("\(c) with the residual add: sum \(i) = \(sum[i].float), expected \(summed[i].float)")
            }
            try compareTiled(fused, c, env: env) {
                try kernels.rmsNorm(dx, gamma: dgamma, eps: 1e-5, permutation: dperm, adding: residual, into: $0, on: env.stream)
            }
        }
        return cases.map(\.description).joined(separator: "; ") + "; each also with the residual add fused"
    }

    static let swiGLU = GPUCheck("fmpq_quantize.swiglu") { env in
        let kernels = try FMPQQuantize(library: env.library)
        for c in cases {
            let layout = try c.layout
            let gateUp = bf16Values(c.m * 2 * c.k, columns: 2 * c.k, using: &env.random)
            let permutation = randomPermutation(c.k, using: &env.random)
            let expected = try ActivationQuantization.swiGLU(gateUp, tokens: c.m, permutation: permutation, layout: layout)
            let output = try poisoned(layout, tokens: c.m, env: env)
            let (dgateUp, dperm) = try (upload(gateUp.map(BFloat16.init), env), upload(permutation, env))
            try kernels.swiGLU(dgateUp, permutation: dperm, into: output, on: env.stream)
            try env.stream.synchronize()
            try compare(output.toHost(), expected, c, roundingSlack: true)
            try compareTiled(output, c, env: env) { try kernels.swiGLU(dgateUp, permutation: dperm, into: $0, on: env.stream) }
        }
        return cases.map(\.description).joined(separator: "; ")
    }

    static let permuted = GPUCheck("fmpq_quantize.permute") { env in
        let kernels = try FMPQQuantize(library: env.library)
        for c in cases {
            let layout = try c.layout
            let x = bf16Values(c.m * c.k, columns: c.k, using: &env.random)
            let permutation = randomPermutation(c.k, using: &env.random)
            let expected = try ActivationQuantization.permuted(x, tokens: c.m, permutation: permutation, layout: layout)
            let output = try poisoned(layout, tokens: c.m, env: env)
            let (dx, dperm) = try (upload(x.map(BFloat16.init), env), upload(permutation, env))
            try kernels.permuted(dx, permutation: dperm, into: output, on: env.stream)
            try env.stream.synchronize()
            try compare(output.toHost(), expected, c, roundingSlack: false)
            try compareTiled(output, c, env: env) { try kernels.permuted(dx, permutation: dperm, into: $0, on: env.stream) }
        }
        return cases.map(\.description).joined(separator: "; ")
    }

    static func compare(_ got: QuantizedActivations, _ expected: QuantizedActivations, _ c: Case, roundingSlack: Bool) throws {
        for i in expected.scales.indices {
            let g = got.scales[i], e = expected.scales[i]
            guard g.isFinite, abs(g - e) <= 1e-5 * abs(e) else {
                throw CheckFailure("\(c): scale \(i) = \(g), expected \(e)")
            }
        }
        let kp = expected.layout.paddedChannels
        var differing = 0
        for t in 0..<expected.tokens {
            for k in 0..<kp {
                let d = abs(got.code(token: t, channel: k) - expected.code(token: t, channel: k))
                guard d <= (roundingSlack ? 1 : 0) else {
                    throw CheckFailure("\(c): code [\(t), \(k)] = \(got.code(token: t, channel: k)), expected \(expected.code(token: t, channel: k))")
                }
                differing += Int(d)
            }
        }
        guard differing <= max(2, expected.tokens * kp / 10_000) else {
            throw CheckFailure("\(c): \(differing) codes one step off of \(expected.tokens * kp)")
        }
    }

    /// Runs `quantize` into a poisoned tiled output and requires exactly the tiled image of
    /// `packed` (the same kernel's packed output): same codes, same scales, zero padding.
    static func compareTiled(
        _ packed: W4AxActivations, _ c: Case, env: GPUCheckEnvironment, _ quantize: (W4AxTiledActivations) throws -> Void
    ) throws {
        guard W4AxTiledActivations.supports(packed.layout) else { return }
        let tiled = try W4AxTiledActivations(layout: packed.layout, tokens: packed.tokens, context: env.context)
        try tiled.codes.fill(byte: 0xA5, on: env.stream)
        try tiled.scales.fill(byte: 0xFF, on: env.stream)
        try quantize(tiled)
        try env.stream.synchronize()
        let expected = try W4AxTiledActivations.image(of: packed.toHost())
        let (codes, scales) = try (tiled.codes.toArray(), tiled.scales.toArray())
        if let i = codes.indices.first(where: { codes[$0] != expected.codes[$0] }) {
            throw CheckFailure("\(c) tiled: code byte \(i) = \(codes[i]), expected \(expected.codes[i])")
        }
        if let i = scales.indices.first(where: { scales[$0].bitPattern != expected.scales[$0].bitPattern }) {
            throw CheckFailure("\(c) tiled: scale \(i) = \(scales[i]), expected \(expected.scales[i])")
        }
    }

    static func poisoned(_ layout: FMPQLayout, tokens: Int, env: GPUCheckEnvironment) throws -> W4AxActivations {
        let output = try W4AxActivations(layout: layout, tokens: tokens, context: env.context)
        try output.int4.fill(byte: 0xA5, on: env.stream)
        try output.int8.fill(byte: 0xA5, on: env.stream)
        try output.scales.fill(byte: 0xFF, on: env.stream)  // NaN
        return output
    }

    static func upload<T: BitwiseCopyable>(_ values: [T], _ env: GPUCheckEnvironment) throws -> DeviceBuffer<T> {
        let buffer = try env.context.allocate(T.self, count: values.count)
        try buffer.copy(from: values)
        return buffer
    }

    /// bf16-representable values in [-2, 2], with a few 30x outlier columns.
    static func bf16Values(_ count: Int, columns: Int, using random: inout SplitMix64) -> [Float] {
        let hot = Set((0..<4).map { _ in Int.random(in: 0..<columns, using: &random) })
        return (0..<count).map { i in
            BFloat16(Float.random(in: -2...2, using: &random) * (hot.contains(i % columns) ? 30 : 1)).float
        }
    }

    static func randomPermutation(_ count: Int, using random: inout SplitMix64) -> [Int32] {
        var p = (0..<Int32(count)).map { $0 }
        p.shuffle(using: &random)
        return p
    }
}
