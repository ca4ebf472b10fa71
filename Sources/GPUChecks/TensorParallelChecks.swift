import CPUBackend
import CPUReference
import CUDA
import GPUBackend
import Kernels
import Model
import Quant

/// Tensor parallelism on the GPUs at hand.
///
/// - `nccl.all_reduce`: NCCL's in-place sum over every GPU (one rank on a one-GPU machine), fp32
///   and bf16, against the host's sum of the same random values. fp32 within 1e-6 of the sum of
///   |terms| (NCCL adds in its own order); bf16 within 2^-7 of it (each of NCCL's partial sums
///   is rounded to bf16, 2^-9 relative, and a ring adds N - 1 times); one rank exactly.
/// - `tensor_parallel.fmpq` / `.bf16`: the runner scenario of `gpu_runner.*` (mixed prefill and
///   decode steps, shuffled KV blocks) at TP=1 and at TP=2, 4 and 8 where the GPUs exist, on a
///   random model whose heads split 8 ways (FMPQ: quantized once, for the largest TP, with o and
///   down permuted per shard). Each TP run must meet the CPU-reference contract of TP=1, and
///   match TP=1's logits within the same limits (0.15 / 0.02 relative L2: the partial sums are
///   rounded to bf16 before NCCL adds them, a perturbation of bf16 activation size, which the
///   FMPQ model amplifies as `gpu_runner.fmpq` measures) with equal argmax wherever TP=1's is clear.
enum TensorParallelChecks {
    static let all = [allReduce, fmpq, bf16]

    static let allReduce = GPUCheck("nccl.all_reduce") { env in
        let ranks = env.deviceCount
        let nccl = try NCCL.load(search: env.librarySearch)
        let libraries = try env.libraries(ranks)
        let group = try NCCLGroup(nccl: nccl, contexts: libraries.map(\.context))
        let count = 1_000_003  // odd: no reliance on vector widths
        var lines: [String] = []
        for type in [NCCLGroup.DataType.float32, .bfloat16] {
            let values = (0..<ranks).map { _ in (0..<count).map { _ in Float.random(in: -1...1, using: &env.random) } }
            let rounded = type == .bfloat16 ? values.map { $0.map { BFloat16($0).float } } : values
            var sum = [Float](repeating: 0, count: count), magnitude = [Float](repeating: 0, count: count)
            for v in rounded { for i in 0..<count { sum[i] += v[i]; magnitude[i] += abs(v[i]) } }
            // One slot per rank, written by that rank's thread only.
            nonisolated(unsafe) let results = UnsafeMutableBufferPointer<[Float]>.allocate(capacity: ranks)
            results.initialize(repeating: [])
            defer {
                results.deinitialize()
                results.deallocate()
            }
            try RankThreads(count: ranks).run { r in
                let context = libraries[r].context, stream = try context.makeStream()
                let result: [Float]
                if type == .float32 {
                    let buffer = try context.allocate(Float.self, count: count)
                    try buffer.copy(from: values[r])
                    try group.allReduceSum(buffer.pointer, count: count, type: type, rank: r, on: stream)
                    try stream.synchronize()
                    result = try buffer.toArray()
                } else {
                    let buffer = try context.allocate(BFloat16.self, count: count)
                    try buffer.copy(from: values[r].map { BFloat16($0) })
                    try group.allReduceSum(buffer.pointer, count: count, type: type, rank: r, on: stream)
                    try stream.synchronize()
                    result = try buffer.toArray().map(\.float)
                }
                try group.checkAsyncError(rank: r)
                results[r] = result
            }
            let limit: Float = ranks == 1 ? 0 : (type == .float32 ? 1e-6 : 1.0 / 128)
            var worst: Float = 0
            for r in 0..<ranks {
                for i in 0..<count {
                    let error = abs(results[r][i] - sum[i]) / max(magnitude[i], 1e-30)
                    guard error <= limit, results[r][i].isFinite else {
                        throw CheckFailure("\(type) rank \(r) element \(i): \(results[r][i]), expected \(sum[i]) (limit \(limit) of \(magnitude[i]))")
                    }
                    worst = max(worst, error)
                }
            }
            lines.append("\(type) worst \(worst) of the sum of |terms| (limit \(limit))")
        }
        return "NCCL \(nccl.versionString), \(ranks) rank\(ranks == 1 ? "" : "s"), \(count) elements: " + lines.joined(separator: "; ")
    }

    static let fmpq = GPUCheck("tensor_parallel.fmpq") { env in try tensorParallel(quantized: true, tolerance: 0.15, &env) }
    static let bf16 = GPUCheck("tensor_parallel.bf16") { env in try tensorParallel(quantized: false, tolerance: 0.02, &env) }

    /// 16 query heads and 8 KV heads of 64, ffn 2048: splits 2, 4 and 8 ways in whole 128-channel blocks.
    static let config = ModelConfig(vocabularySize: 1000, dim: 512, layerCount: 2, headCount: 16, kvHeadCount: 8, headDim: 64,
                                    ffnDim: 2048, ropeBase: 500_000, contextLength: 256)

    static func tensorParallel(quantized: Bool, tolerance: Double, _ env: inout GPUCheckEnvironment) throws -> String {
        let counts = [2, 4, 8].filter { $0 <= env.deviceCount }
        guard let largest = counts.last else { throw CheckSkipped("one GPU (tensor parallelism needs 2 or more)") }
        let source = RandomLlamaWeights(config: config, random: &env.random)
        // Half the blocks INT8 so that every rank has INT8 blocks of its own in o at TP=4.
        let recipe = FMPQRecipe(budget: .fractionOfBlocks(0.5), weightMethod: .rtn)
        let seed = env.random
        let (_, whole) = try GPURunnerChecks.compare(
            source: source, quantized: quantized, tolerance: tolerance, recipe: recipe, tensorParallel: largest, &env)
        var lines: [String] = []
        for ranks in counts {
            env.random = seed  // the same calibration, prompts and checkpoint as TP=1
            let (summary, rows) = try GPURunnerChecks.compare(
                source: source, quantized: quantized, tolerance: tolerance, ranks: ranks, recipe: recipe, tensorParallel: largest, &env)
            guard rows.count == whole.count else { throw CheckFailure("TP=\(ranks) gave \(rows.count) rows, TP=1 \(whole.count)") }
            var worst = 0.0, clear = 0, agree = 0
            for (a, b) in zip(rows, whole) {
                let stats = GPURunnerChecks.compareRow(a, b)
                worst = max(worst, stats.relative)
                if stats.clear { clear += 1; if stats.sameArgmax { agree += 1 } }
            }
            let line = "TP=\(ranks) vs TP=1: max relative L2 \(GPURunnerChecks.format(worst)) (limit \(tolerance)), argmax \(agree)/\(clear) clear rows; vs CPU: \(summary)"
            guard worst <= tolerance, agree == clear else { throw CheckFailure(line) }
            lines.append(line)
        }
        return lines.joined(separator: " | ")
    }
}
