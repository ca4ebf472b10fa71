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

/// The GPU model runner against the CPU backend on the same weights, through a scenario of mixed
/// steps: whole prompts, chunked prefill and decode in one batch, ragged lengths, shuffled
/// (non-contiguous) KV blocks.
///
/// - `gpu_runner.fmpq`: an FMPQ checkpoint (calibrated and quantized by `ModelQuantizer`, RTN)
///   with KV4, against the CPU's quantized forward (`QuantizedModelHooks`, KV4). Both quantize the
///   same way (the kernels are exact against the integer reference: w4ax_gemm, fmpq_quantize,
///   rope_kv_write checks), but the GPU keeps the residual stream and the linears' outputs in bf16
///   (relative rounding 2^-9), so a value within 2^-9 of a rounding boundary of its 4-bit code
///   (a step is absmax/7) rounds the other way, and these flips compound through the layers. How
///   much that moves the result is measured, not assumed: the CPU's FMPQ model is run a second time
///   with only its embeddings rounded to bf16, and that distance (measured on the H200 run: 0.09 to
///   0.10 relative L2 on these random models; SmolLM2 RTN perplexity 26.1 -> 34.8) is the model's
///   own sensitivity. The GPU must stay within 1.5x of it (+0.01) and under 15%, with identical
///   argmax wherever the CPU's choice is clear.
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

    /// Both attention paths of a prefill: one CTA per row, and query tiles (`prefillQueryTiles`).
    static let fmpq = GPUCheck("gpu_runner.fmpq") { env in
        try runAll(queryTiles: [false, true]) {
            try compare(source: RandomLlamaWeights(config: $0, random: &env.random), quantized: true, tolerance: 0.15,
                        queryTiles: $1, &env).summary
        }
    }

    static let bf16 = GPUCheck("gpu_runner.bf16") { env in
        try runAll { config, _ in
            try compare(source: RandomLlamaWeights(config: config, random: &env.random), quantized: false, tolerance: 0.02, &env).summary
        }
    }

    /// Every config (and query-tile setting), all reported even when one fails.
    static func runAll(
        queryTiles: [Bool] = [GPURunnerOptions.defaultPrefillQueryTiles], _ body: (ModelConfig, Bool) throws -> String
    ) throws -> String {
        var lines: [String] = [], failed = false
        for config in configs {
            for tiles in queryTiles {
                let label = queryTiles.count > 1 ? "query tiles \(tiles ? "on" : "off"): " : ""
                do { lines.append(label + (try body(config, tiles))) } catch { lines.append(label + "FAILED \(error)"); failed = true }
            }
        }
        let summary = lines.joined(separator: "; ")
        if failed { throw CheckFailure(summary) }
        return summary
    }

    /// The default model (SmolLM2-135M) when its file is at hand, on real text: the perplexity of the
    /// GPU runner against the CPU backend on the same weights, teacher-forced through one prefill
    /// chunk and single-token decode steps. bf16 against the fp32 CPU model (limit 1%), and an FMPQ
    /// checkpoint (RTN, calibrated on one paragraph of other text, KV4) against the CPU's exact FMPQ
    /// forward (limit 3%, or 1.5x the CPU's own move under bf16 embeddings: see above).
    static let smolLM2 = GPUCheck("gpu_runner.smollm2") { env in
        guard let path = env.modelPath else { throw CheckSkipped("no model file (check-gpu --model PATH)") }
        let file = try GGUFFile(path: path)
        let source = try GGUFWeights(file: file)
        let tokenizer = try makeTokenizer(gguf: file)
        let text = tokenizer.encode(evaluationText)
        let calibration = tokenizer.encode(calibrationText)
        var lines: [String] = [], failed = false
        for quantized in [false, true] {
            let (gpu, cpu, perturbed) = try perplexities(source: source, quantized: quantized, text: text, calibration: calibration, &env)
            // FMPQ: within 3%, or within 1.5x of how far the CPU moves from itself when only its
            // embeddings are rounded to bf16 (a quantized model amplifies any 2^-9 perturbation).
            let relative = abs(gpu - cpu) / cpu, limit = quantized ? max(0.03, 1.5 * abs(perturbed - cpu) / cpu) : 0.01
            lines.append("\(quantized ? "FMPQ W4AxKV4" : "bf16") ppl GPU \(format(gpu)) CPU \(format(cpu)) (\(format(100 * relative))%, limit \(format(100 * limit))%), CPU with bf16 embeddings \(format(perturbed))")
            if !(relative <= limit) { failed = true }
        }
        let summary = "\(text.count) tokens: " + lines.joined(separator: "; ")
        if failed { throw CheckFailure(summary) }
        return summary
    }

    /// Perplexity of `text` after its first 32 tokens, on the GPU runner and on the CPU backend.
    static func perplexities(
        source: any LlamaWeightSource, quantized: Bool, text: [Int32], calibration: [Int32], _ env: inout GPUCheckEnvironment
    ) throws -> (gpu: Double, cpu: Double, perturbed: Double) {
        let (cpu, runner, checkpoint) = try makeModels(source: source, quantized: quantized, calibration: [calibration], &env)
        let perturbed = try perturbedCPU(source: source, checkpoint: checkpoint)
        let cache = cpu.makeCache(capacity: text.count), perturbedCache = cpu.makeCache(capacity: text.count)
        var perturbedLogits: [Float] = [], perturbedNLL = 0.0
        let table = (0..<Int32((text.count + 15) / 16)).map { $0 }
        var cpuLogits: [Float] = [], gpuLogits: [Float] = []
        var gpuNLL = 0.0, cpuNLL = 0.0, count = 0
        var position = 0, chunk = 32
        while position < text.count - 1 {
            let tokens = Array(text[position..<(position + chunk)])
            try runner.execute([StepSequence(tokens: tokens, firstPosition: position, blockTable: table, needsLogits: true)], logits: &gpuLogits)
            try cpu.forward(tokens, at: position, cache: cache, logits: &cpuLogits)
            try perturbed.forward(tokens, at: position, cache: perturbedCache, logits: &perturbedLogits)
            position += chunk
            chunk = 1
            let next = Int(text[position])
            gpuNLL -= logSoftmax(gpuLogits, at: next)
            cpuNLL -= logSoftmax(cpuLogits, at: next)
            perturbedNLL -= logSoftmax(perturbedLogits, at: next)
            count += 1
        }
        return (exp(gpuNLL / Double(count)), exp(cpuNLL / Double(count)), exp(perturbedNLL / Double(count)))
    }

    static func logSoftmax(_ logits: [Float], at index: Int) -> Double {
        let top = Double(logits.max()!)
        let sum = logits.reduce(0.0) { $0 + exp(Double($1) - top) }
        return Double(logits[index]) - top - log(sum)
    }

    /// Genesis 1 (World English Bible, public domain), calibration; John 1, evaluation.
    static let calibrationText = """
        In the beginning, God created the heavens and the earth. The earth was formless and empty. Darkness was on the \
        surface of the deep and God's Spirit was hovering over the surface of the waters. God said, "Let there be light," \
        and there was light. God saw the light, and saw that it was good. God divided the light from the darkness. God \
        called the light "day", and the darkness he called "night". There was evening and there was morning, the first day.
        """
    static let evaluationText = """
        In the beginning was the Word, and the Word was with God, and the Word was God. The same was in the beginning \
        with God. All things were made through him. Without him, nothing was made that has been made. In him was life, \
        and the life was the light of men. The light shines in the darkness, and the darkness hasn't overcome it. There \
        came a man sent from God, whose name was John. The same came as a witness, that he might testify about the light, \
        that all might believe through him. He was not the light, but was sent that he might testify about the light.
        """

    /// Runs the scenario on both sides and compares every logits row; returns the GPU's rows too.
    /// `ranks` > 1 runs the GPU side tensor parallel over that many GPUs (`recipe` then must
    /// quantize for a multiple of it).
    static func compare(
        source: any LlamaWeightSource, quantized: Bool, tolerance: Double, ranks: Int = 1, recipe: FMPQRecipe = FMPQRecipe(weightMethod: .rtn),
        tensorParallel: Int = 1, queryTiles: Bool = GPURunnerOptions.defaultPrefillQueryTiles, _ env: inout GPUCheckEnvironment
    ) throws -> (summary: String, rows: [[Float]]) {
        let config = source.config
        let calibration = (0..<4).map { _ in (0..<48).map { _ in Int32.random(in: 0..<Int32(config.vocabularySize), using: &env.random) } }
        let (cpu, runner, checkpoint) = try makeModels(
            source: source, quantized: quantized, calibration: calibration, ranks: ranks,
            settings: QuantizeSettings(recipe: recipe, tensorParallel: tensorParallel), queryTiles: queryTiles, &env)
        var gpuRows: [[Float]] = []
        // The fp32 model, to measure FMPQ's own error, and the perturbed CPU model (quantized runs only).
        let float = quantized ? try LlamaCPUModel(weights: source, maxBatchTokens: 64) : nil
        let perturbed = quantized ? try perturbedCPU(source: source, checkpoint: checkpoint) : nil
        let blocks = 64, context = 256

        // Three sequences on shuffled blocks: prompts of 37, 5 and 50 tokens; the third is
        // prefilled in two chunks (the first without logits) while the others decode.
        var free = Array(0..<Int32(blocks))
        free.shuffle(using: &env.random)
        let promptLengths = [37, 5, 50]
        var prompts = promptLengths.map { n in (0..<n).map { _ in Int32.random(in: 0..<Int32(config.vocabularySize), using: &env.random) } }
        let tables = (0..<3).map { i in Array(free[(i * 12)..<(i * 12 + 12)]) }  // 12 blocks: 192 positions each
        let caches = (0..<3).map { _ in cpu.makeCache(capacity: context) }
        let floatCaches = (0..<3).map { _ in cpu.makeCache(capacity: context) }
        let perturbedCaches = (0..<3).map { _ in cpu.makeCache(capacity: context) }
        var floatLogits: [Float] = [], quantizationError = 0.0, perturbedLogits: [Float] = [], sensitivity = 0.0
        var fed = [0, 0, 0]  // tokens of each sequence already run
        var worst = 0.0, rows = 0, clearRows = 0, argmaxAgree = 0
        var cpuLogits: [Float] = [], gpuLogits: [Float] = []

        // step: (sequence, how many of its pending tokens to run). The first step's 72 tokens
        // take the large-M GEMM (tiled activations, at least W4AxGemm.largeMThreshold), the rest the small-M one.
        let plan: [[(Int, Int)]] = [[(0, 37), (1, 5), (2, 30)], [(2, 20)], [(0, 1), (1, 1), (2, 1)], [(0, 1), (1, 1), (2, 1)],
                                    [(0, 1), (1, 1), (2, 1)], [(1, 1), (2, 1)]]
        for step in plan {
            var sequences: [StepSequence] = []
            for (i, n) in step {
                let tokens = Array(prompts[i][fed[i]..<(fed[i] + n)])
                sequences.append(StepSequence(tokens: tokens, firstPosition: fed[i], blockTable: tables[i],
                                              needsLogits: fed[i] + n == prompts[i].count))
            }
            try runner.execute(sequences, logits: &gpuLogits)
            var row = 0
            for (k, (i, n)) in step.enumerated() {
                try cpu.forward(sequences[k].tokens, at: fed[i], cache: caches[i], logits: &cpuLogits)
                try float?.forward(sequences[k].tokens, at: fed[i], cache: floatCaches[i], logits: &floatLogits)
                try perturbed?.forward(sequences[k].tokens, at: fed[i], cache: perturbedCaches[i], logits: &perturbedLogits)
                fed[i] += n
                guard sequences[k].needsLogits else { continue }
                let vocab = config.vocabularySize
                let g = Array(gpuLogits[(row * vocab)..<((row + 1) * vocab)])
                gpuRows.append(g)
                row += 1
                let stats = compareRow(g, cpuLogits)
                guard stats.finite else { throw CheckFailure("non-finite GPU logits for sequence \(i) at position \(fed[i])") }
                worst = max(worst, stats.relative)
                if float != nil {
                    quantizationError = max(quantizationError, compareRow(cpuLogits, floatLogits).relative)
                    sensitivity = max(sensitivity, compareRow(perturbedLogits, cpuLogits).relative)
                }
                rows += 1
                if stats.clear {
                    clearRows += 1
                    if stats.sameArgmax { argmaxAgree += 1 }
                }
                // Feed the CPU's greedy token to both sides next.
                prompts[i].append(Sampler.argmax(cpuLogits))
            }
        }
        var summary = "\(config.architecture) d\(config.dim) h\(config.headDim): \(rows) rows, max relative L2 \(format(worst)) (limit \(tolerance)"
        summary += quantized ? ", FMPQ vs fp32 \(format(quantizationError)), CPU FMPQ vs itself with bf16 embeddings \(format(sensitivity)))" : ")"
        summary += ", argmax \(argmaxAgree)/\(clearRows) clear rows"
        guard worst <= tolerance, !quantized || worst <= 1.5 * sensitivity + 0.01 else { throw CheckFailure(summary) }
        guard argmaxAgree == clearRows else { throw CheckFailure("argmax differs: " + summary) }
        return (summary, gpuRows)
    }

    /// The CPU model (with FMPQ hooks when `quantized`: calibrated on `calibration`, quantized with
    /// `settings`, KV4) and a GPU runner on the same weights (64 blocks of 16 tokens, 256
    /// positions), over `ranks` GPUs.
    static func makeModels(
        source: any LlamaWeightSource, quantized: Bool, calibration: [[Int32]], ranks: Int = 1,
        settings: QuantizeSettings = QuantizeSettings(recipe: FMPQRecipe(weightMethod: .rtn)),
        queryTiles: Bool = GPURunnerOptions.defaultPrefillQueryTiles, _ env: inout GPUCheckEnvironment
    ) throws -> (LlamaCPUModel, any GPURunner, QuantizedCheckpoint?) {
        let cpu = try LlamaCPUModel(weights: source, maxBatchTokens: 64)
        let plan: GPUWeightsPlan
        var made: QuantizedCheckpoint?
        if quantized {
            let observed = try Calibrator.calibrate(model: cpu, sequences: calibration, hessians: false)
            let checkpoint = try ModelQuantizer.quantize(
                model: cpu, calibration: observed, settings: settings,
                modelFile: "check", modelFileSHA256: nil, source: CalibrationSource(text: "check"))
            try QuantizedModelHooks.install(on: cpu, checkpoint: checkpoint, evaluation: QuantizedEvaluation(checkpoint))
            plan = .checkpoint(checkpoint, base: source)
            made = checkpoint
        } else {
            plan = .bf16(source)
        }
        let runner = try plan.runner(
            libraries: try env.libraries(ranks), search: env.librarySearch,
            options: GPURunnerOptions(kvBlockSize: 16, kvBlocks: 64, maxStepTokens: 128, maxStepSequences: 8, contextLength: 256,
                                      prefillQueryTiles: queryTiles))
        return (cpu, runner, made)
    }

    /// The CPU model again, on the same weights but with the token embeddings rounded to bf16 (as
    /// the GPU stores them) and the same checkpoint's hooks: how far a perturbation of 2^-9 at the
    /// input alone moves the CPU's own result (the model's sensitivity, for the FMPQ tolerances).
    static func perturbedCPU(source: any LlamaWeightSource, checkpoint: QuantizedCheckpoint?) throws -> LlamaCPUModel {
        let model = try LlamaCPUModel(weights: BF16EmbeddingSource(base: source), maxBatchTokens: 64)
        if let checkpoint {
            try QuantizedModelHooks.install(on: model, checkpoint: checkpoint, evaluation: QuantizedEvaluation(checkpoint))
        }
        return model
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

/// `base` with its token embeddings rounded to bf16.
struct BF16EmbeddingSource: LlamaWeightSource {
    let base: any LlamaWeightSource
    var config: ModelConfig { base.config }
    func name(of tensor: LlamaTensor) -> String { base.name(of: tensor) }
    func shape(of tensor: LlamaTensor) -> [Int]? { base.shape(of: tensor) }
    func ropeFrequencyFactors() throws -> [Float]? { try base.ropeFrequencyFactors() }

    func read(_ tensor: LlamaTensor, into output: UnsafeMutableBufferPointer<Float>) throws {
        try base.read(tensor, into: output)
        // Tied models read the LM head from the same tensor; round only what the GPU rounds: both.
        if tensor == .tokenEmbedding || tensor == .output {
            for i in output.indices { output[i] = BFloat16(output[i]).float }
        }
    }
}
