import CPUReference
import Glibc
import CUDA
import Kernels
import Quant

/// layer_ops.cu against fp32 host math: gather, bias and the fused residual add are exact (the kernels round
/// the same fp32 sum to bf16 once); RMSNorm and SwiGLU differ from the host only by fp32 summation
/// order and expf, far below one bf16 step, so they must land within one bf16 ulp.
enum LayerOpsChecks {
    static let all = [check]

    static let check = GPUCheck("layer_ops") { env in
        let ops = try LayerOps(library: env.library)
        let stream = env.stream, context = env.context
        var covered: [String] = []
        for (tokens, dim) in [(1, 576), (7, 320), (33, 4096)] {
            let vocab = 50
            let table = (0..<vocab * dim).map { _ in BFloat16(Float.random(in: -2...2, using: &env.random)) }
            let ids = (0..<tokens).map { _ in Int32.random(in: 0..<Int32(vocab), using: &env.random) }
            let dTable = try upload(table, context), dIds = try upload(ids, context)
            let x = try context.allocate(BFloat16.self, count: tokens * dim)
            try ops.embeddingGather(table: dTable, ids: dIds, dim: dim, into: x, on: stream)
            try stream.synchronize()
            let gathered = ids.flatMap { table[(Int($0) * dim)..<((Int($0) + 1) * dim)] }
            try expectEqual(try x.toArray(), gathered, "embedding_gather \(tokens)x\(dim)")

            // The later kernels read the residual stream after an add: x + y, summed on the host.
            let y = (0..<tokens * dim).map { _ in BFloat16(Float.random(in: -2...2, using: &env.random)) }
            let summed = zip(gathered, y).map { BFloat16($0.float + $1.float) }
            try x.copy(from: summed)

            let gamma = (0..<dim).map { _ in Float.random(in: 0.5...1.5, using: &env.random) }
            let rows = (0..<3).map { _ in Int32.random(in: 0..<Int32(tokens), using: &env.random) }
            let normed = try context.allocate(BFloat16.self, count: rows.count * dim)
            try ops.rmsNorm(x, rows: try upload(rows, context), gamma: try upload(gamma, context), eps: 1e-5, into: normed, on: stream)
            try stream.synchronize()
            var expected: [Float] = []
            for r in rows {
                let row = summed[(Int(r) * dim)..<((Int(r) + 1) * dim)].map(\.float)
                let inverse = 1 / (row.reduce(0) { $0 + $1 * $1 } / Float(dim) + 1e-5).squareRoot()
                expected += row.enumerated().map { $0.element * inverse * gamma[$0.offset] }
            }
            try expectWithinOneULP(try normed.toArray(), expected, "rmsnorm_rows \(rows.count)x\(dim)")

            // The residual add fused into the norm: the same normed rows, and the sum in `sum`'s rows.
            let residual = FusedResidualAdd(added: try upload(y, context), sum: try context.allocate(BFloat16.self, count: tokens * dim))
            try residual.sum.fill(byte: 0xFF, on: stream)
            let fusedNormed = try context.allocate(BFloat16.self, count: rows.count * dim)
            try ops.rmsNorm(try upload(gathered, context), rows: try upload(rows, context), gamma: try upload(gamma, context), eps: 1e-5,
                            adding: residual, into: fusedNormed, on: stream)
            try stream.synchronize()
            try expectEqual(try fusedNormed.toArray(), try normed.toArray(), "rmsnorm_rows with the residual add \(rows.count)x\(dim)")
            let sum = try residual.sum.toArray()
            for r in rows {
                let range = (Int(r) * dim)..<((Int(r) + 1) * dim)
                try expectEqual(Array(sum[range]), Array(summed[range]), "rmsnorm_rows' residual sum, row \(r)")
            }

            let f = dim / 2
            let hidden = try context.allocate(BFloat16.self, count: tokens * f)
            try ops.swiGLU(x, hidden: f, into: hidden, on: stream)
            try stream.synchronize()
            var swiglu: [Float] = []
            for t in 0..<tokens {
                for i in 0..<f {
                    let g = summed[t * dim + i].float, u = summed[t * dim + f + i].float
                    swiglu.append(g / (1 + expf(-g)) * u)
                }
            }
            try expectWithinOneULP(try hidden.toArray(), swiglu, "swiglu_rows \(tokens)x\(f)")

            let bias = (0..<dim).map { _ in Float.random(in: -1...1, using: &env.random) }
            try ops.biasAdd(x, bias: try upload(bias, context), on: stream)
            try stream.synchronize()
            try expectEqual(try x.toArray(), summed.enumerated().map { BFloat16($0.element.float + bias[$0.offset % dim]) }, "bias_add")
            covered.append("\(tokens)x\(dim)")
        }
        return "gather, rmsnorm (also with the residual add fused), swiglu, bias on " + covered.joined(separator: ", ")
    }

    static func upload<T: BitwiseCopyable>(_ host: [T], _ context: CUDAContext) throws -> DeviceBuffer<T> {
        let buffer = try context.allocate(T.self, count: host.count)
        try buffer.copy(from: host)
        return buffer
    }

    /// Each bf16 result within one bf16 step (2^-7 relative to its magnitude) of the fp32 value.
    static func expectWithinOneULP(_ actual: [BFloat16], _ expected: [Float], _ what: String) throws {
        guard actual.count == expected.count else { throw CheckFailure("\(what): \(actual.count) values, expected \(expected.count)") }
        for i in actual.indices {
            let a = actual[i].float, e = expected[i]
            let ulp = max(abs(e), 1e-30) * 0.0078125
            guard abs(a - e) <= ulp else { throw CheckFailure("\(what): element \(i) is \(a), expected \(e)") }
        }
    }
}
