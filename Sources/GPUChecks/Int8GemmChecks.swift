import CUDA
import CPUReference
import Kernels

/// gemm_s8_mma.cu against the exact integer reference.
enum Int8GemmChecks {
    static let all = [exact, extremes]

    /// Random full-range int8 operands; shapes include M and N that are not tile multiples.
    static let exact = GPUCheck("gemm_s8_mma.exact") { env in
        let gemm = try Int8GemmKernel(library: env.library)
        var shapes = [(1, 8, 32), (16, 8, 32), (17, 9, 64), (33, 100, 96), (128, 256, 512), (257, 130, 1024)]
        shapes.append((Int.random(in: 1...300, using: &env.random), Int.random(in: 1...300, using: &env.random),
                       32 * Int.random(in: 1...40, using: &env.random)))
        for (m, n, k) in shapes {
            let a = env.random.int8s(m * k), b = env.random.int8s(n * k)
            try check(gemm, env: env, a: a, b: b, m: m, n: n, k: k)
        }
        return "shapes " + shapes.map { "\($0.0)x\($0.1)x\($0.2)" }.joined(separator: ", ")
    }

    /// The largest products: all -128 (sum = K * 16384) and alternating signs.
    static let extremes = GPUCheck("gemm_s8_mma.extremes") { env in
        let gemm = try Int8GemmKernel(library: env.library)
        let (m, n, k) = (48, 40, 4096)
        try check(gemm, env: env, a: [Int8](repeating: -128, count: m * k), b: [Int8](repeating: -128, count: n * k), m: m, n: n, k: k)
        let alternating = (0..<(m * k)).map { Int8($0 % 2 == 0 ? 127 : -128) }
        try check(gemm, env: env, a: alternating, b: [Int8](repeating: -128, count: n * k), m: m, n: n, k: k)
        return "\(m)x\(n)x\(k) at -128 and +127/-128"
    }

    static func check(_ gemm: Int8GemmKernel, env: GPUCheckEnvironment, a: [Int8], b: [Int8], m: Int, n: Int, k: Int) throws {
        let da = try env.context.allocate(Int8.self, count: m * k)
        let db = try env.context.allocate(Int8.self, count: n * k)
        let dc = try env.context.allocate(Int32.self, count: m * n)
        try da.copy(from: a)
        try db.copy(from: b)
        try dc.fill(byte: 0xA5, on: env.stream)  // poison: an unwritten element cannot pass
        try gemm(a: da, b: db, c: dc, m: m, n: n, k: k, on: env.stream)
        try env.stream.synchronize()
        try expectEqual(try dc.toArray(), IntegerGemm.s8(a: a, b: b, m: m, n: n, k: k), "gemm \(m)x\(n)x\(k)")
    }
}
