import CPUBackend
import CPUReference
import CUDA
import Engine
import FMPQModel
import GPUBackend
import Kernels
import Model
import Quant
import Sampling
import Glibc

func trace(_ s: String) { let m = "trace: " + s + "\n"; _ = m.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) } }

/// The GPU model runner against the CPU backend on the same weights, through a scenario of mixed
/// steps: whole prompts, chunked prefill and decode in one batch, ragged lengths, shuffled
/// (non-contiguous) KV blocks.
///
/// - `gpu_runner.fmpq`: an FMPQ checkpoint (calibrated and quantized by `ModelQuantizer`, RTN)
///   with KV4, against the CPU's quantized forward (`QuantizedModelHooks`, KV4). Both quantize the
///   same activations with the same codes, but the GPU keeps the residual stream and the linears'
///   outputs in bf16 (relative rounding 2^-9), so a value near a rounding boundary of its 4-bit
///   code can round the other way; logits differ by a few percent (the tolerance below).
/// - `gpu_runner.bf16`: the float model in bf16 against the fp32 CPU model: bf16 weights and
///   activations, so about 1% relative.
/// Each also checks that the argmax agrees wherever the CPU's top-two gap is clear.
enum GPURunnerChecks {
    static let all = [fmpq, bf16, smolLM2]

    static let configs = [
        // dim 320: 2.5 blocks of 128 (a partial FMPQ block, like SmolLM2's 576); GQA group 5; GGUF RoPE.
        ModelConfig(vocabularySize: 1000, dim: 320, layerCount: 2, headCount: 5, kvHeadCount: 1, headDim: 64, ffnDim: 640,
                    ropeBase: 10_000, contextLength: 256),
        // Qwen2-style: q/k/v bias, rotate-half RoPE, head 128, tied embeddings.
        ModelConfig(architecture: "qwen2", vocabularySize: 700, dim: 256, layerCount: 2, headCount: 4, kvHeadCount: 2, headDim: 128,
                    ffnDim: 512, ropeBase: 1_000_000, ropeConvention: .halves, contextLength: 256, tiedEmbeddings: true,
                    attentionBias: true),
    ]

    static let fmpq = GPUCheck("gpu_runner.fmpq") { env in
        try configs.map { config in
            let source = RandomLlamaWeights(config: config, random: &env.random)
            return try compare(source: source, quantized: true, tolerance: 0.06, &env)
        }.joined(separator: "; ")
    }

    static let bf16 = GPUCheck("gpu_runner.bf16") { env in
        try configs.map { config in
            let source = RandomLlamaWeights(config: config, random: &env.random)
            return try compare(source: source, quantized: false, tolerance: 0.02, &env)
        }.joined(separator: "; ")
    }

    /// The default model (SmolLM2-135M) when its file is at hand: FMPQ RTN checkpoint, KV4.
    static let smolLM2 = GPUCheck("gpu_runner.smollm2") { env in
        guard let path = env.modelPath else { return "skipped: no model file (check-gpu --model PATH)" }
        let source = try GGUFWeights(file: GGUFFile(path: path))
        return try compare(source: source, quantized: true, tolerance: 0.08, &env)
    }

    /// Runs the scenario on both sides and compares every logits row.
    static func compare(source: any LlamaWeightSource, quantized: Bool, tolerance: Double, _ env: inout GPUCheckEnvironment) throws -> String {
        let config = source.config
        trace("cpu model")
        let cpu = try LlamaCPUModel(weights: source, maxBatchTokens: 64)
        let weights: GPUModelWeights
        if quantized {
            let calibrationTokens = (0..<4).map { _ in (0..<48).map { _ in Int32.random(in: 0..<Int32(config.vocabularySize), using: &env.random) } }
            trace("calibrate")
            let calibration = try Calibrator.calibrate(model: cpu, sequences: calibrationTokens, hessians: false)
            let checkpoint = try ModelQuantizer.quantize(
                model: cpu, calibration: calibration, settings: QuantizeSettings(recipe: FMPQRecipe(weightMethod: .rtn)),
                modelFile: "random", modelFileSHA256: nil, source: CalibrationSource(text: "random tokens"))
            trace("hooks")
            try QuantizedModelHooks.install(on: cpu, checkpoint: checkpoint, evaluation: QuantizedEvaluation(kv4: true))
            trace("gpu weights")
            weights = try GPUModelWeights(checkpoint: checkpoint, base: source, context: env.context)
        } else {
            weights = try GPUModelWeights(bf16: source, context: env.context)
        }
        trace("runner")
        let blas = try CuBLASLt.load(search: env.librarySearch)
        let blockSize = 16, blocks = 64, context = 256
        let runner = try GPUModelRunner(
            weights: weights, options: GPURunnerOptions(kvBlockSize: blockSize, kvBlocks: blocks, maxStepTokens: 128, maxStepSequences: 8,
                                                        contextLength: context),
            library: env.library, blas: blas)

        // Three sequences on shuffled blocks: prompts of 37, 5 and 50 tokens; the third is
        // prefilled in two chunks (the first without logits) while the others decode.
        var free = Array(0..<Int32(blocks))
        free.shuffle(using: &env.random)
        let promptLengths = [37, 5, 50]
        var prompts = promptLengths.map { n in (0..<n).map { _ in Int32.random(in: 0..<Int32(config.vocabularySize), using: &env.random) } }
        let tables = (0..<3).map { i in Array(free[(i * 12)..<(i * 12 + 12)]) }  // 12 blocks: 192 positions each
        let caches = (0..<3).map { _ in cpu.makeCache(capacity: context) }
        var fed = [0, 0, 0]  // tokens of each sequence already run
        var worst = 0.0, rows = 0, clearRows = 0, argmaxAgree = 0
        var cpuLogits: [Float] = [], gpuLogits: [Float] = []

        // step: (sequence, how many of its pending tokens to run)
        let plan: [[(Int, Int)]] = [[(0, 37), (1, 5), (2, 20)], [(2, 30)], [(0, 1), (1, 1), (2, 1)], [(0, 1), (1, 1), (2, 1)],
                                    [(0, 1), (1, 1), (2, 1)], [(1, 1), (2, 1)]]
        for step in plan {
            var sequences: [StepSequence] = []
            for (i, n) in step {
                let tokens = Array(prompts[i][fed[i]..<(fed[i] + n)])
                sequences.append(StepSequence(tokens: tokens, firstPosition: fed[i], blockTable: tables[i],
                                              needsLogits: fed[i] + n == prompts[i].count))
            }
            trace("execute \(step)")
            try runner.execute(sequences, logits: &gpuLogits)
            trace("cpu")
            var row = 0
            for (k, (i, n)) in step.enumerated() {
                trace("cpu forward \(i) \(sequences[k].tokens.count) at \(fed[i])")
                try cpu.forward(sequences[k].tokens, at: fed[i], cache: caches[i], logits: &cpuLogits)
                trace("cpu forward done \(cpuLogits.count) gpu \(gpuLogits.count)")
                fed[i] += n
                guard sequences[k].needsLogits else { continue }
                let vocab = config.vocabularySize
                let g = Array(gpuLogits[(row * vocab)..<((row + 1) * vocab)])
                row += 1
                let stats = compareRow(g, cpuLogits)
                trace("compared \(stats)")
                guard stats.finite else { throw CheckFailure("non-finite GPU logits for sequence \(i) at position \(fed[i])") }
                worst = max(worst, stats.relative)
                rows += 1
                if stats.clear {
                    clearRows += 1
                    if stats.sameArgmax { argmaxAgree += 1 }
                }
                // Feed the CPU's greedy token to both sides next.
                prompts[i].append(Sampler.argmax(cpuLogits))
            }
        }
        let summary = "\(config.architecture) d\(config.dim) h\(config.headDim): \(rows) rows, max relative L2 \(format(worst)) (limit \(tolerance)), argmax \(argmaxAgree)/\(clearRows) clear rows"
        guard worst <= tolerance else { throw CheckFailure(summary) }
        guard argmaxAgree == clearRows else { throw CheckFailure("argmax differs: " + summary) }
        return summary
    }

    struct RowStats { var relative: Double, finite: Bool, clear: Bool, sameArgmax: Bool }

    /// ||g - c|| / ||c||; the CPU's argmax is "clear" when its top two logits differ by more than 5%
    /// of the logits' standard deviation and by more than 4x the row's RMS difference (more than the
    /// measured error could move them).
    static func compareRow(_ g: [Float], _ c: [Float]) -> RowStats {
        var diff = 0.0, norm = 0.0, finite = true, mean = 0.0
        for i in c.indices {
            if !g[i].isFinite { finite = false }
            let d = Double(g[i]) - Double(c[i])
            diff += d * d
            norm += Double(c[i]) * Double(c[i])
            mean += Double(c[i])
        }
        mean /= Double(c.count)
        let std = (norm / Double(c.count) - mean * mean).squareRoot()
        let rms = (diff / Double(c.count)).squareRoot()
        let sorted = c.enumerated().sorted { $0.element > $1.element }
        let gap = Double(sorted[0].element - sorted[1].element)
        let clear = gap > max(0.05 * std, 4 * rms)
        return RowStats(relative: (diff / max(norm, 1e-30)).squareRoot(), finite: finite, clear: clear,
                        sameArgmax: Sampler.argmax(g) == Int32(sorted[0].offset))
    }

    static func format(_ x: Double) -> String {
        let scaled = (x * 10000).rounded() / 10000
        return "\(scaled)"
    }
}
