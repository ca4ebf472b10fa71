import ArgumentParser
import CPUBackend
import FMPQModel
import Model
import Quant

#if canImport(Glibc)
import Glibc
#endif

extension Eval {
    /// The accuracy table of bench/results/accuracy-smollm2.md: every row on the same model, the
    /// same calibration pass and the same evaluation tokens; rows differ only in the quantization
    /// settings (checkpoints built in memory by the same code as `comet quantize`) and in how the
    /// checkpoint is evaluated.
    struct AccuracyTable: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "table",
            abstract: "Perplexity of FP, the baselines and FMPQ variants on the held-out split (CPU; slow).",
            discussion: "Calibrates once, then for each row quantizes in memory and scores the same tokens. Rows print to stdout as they finish (markdown); progress on stderr.")

        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var calibration: CalibrationOptions

        @Option(help: "Held-out text (default: web-evaluation.txt, WEB Romans-Revelation).")
        var text: String?

        @Option(help: "Score the first N tokens of the text.")
        var maxTokens = 16384

        @Option(help: "Window length (and stride) in tokens.")
        var ctx = 512

        @Option(help: "Alpha of the K smoothing rows (-ks): each RoPE pair of K divided by (its calibration abs-max)^alpha.")
        var keySmoothingAlpha = QuantizeSettings.defaultKeySmoothing

        @Option(help: "Comma-separated rows to run (default: all). Names: \(TableRow.all.map(\.name).joined(separator: ", ")).")
        var rows: String?

        func run() throws {
            let wanted = try (rows.map { list in
                try list.split(separator: ",").map { name in
                    guard let row = TableRow.all.first(where: { $0.name == name }) else { throw ValidationError("no row \(name)") }
                    return row
                }
            } ?? TableRow.all).map { $0.withKeySmoothing(alpha: keySmoothingAlpha) }
            let textPath = text ?? DefaultModel.assetsFolder() + "/web-evaluation.txt"
            let bytes = try orFail("") { try readFile(textPath) }
            guard let content = String(validating: bytes, as: UTF8.self) else { throw fail("\(textPath) is not UTF-8 text") }
            let gguf = try modelOptions.openGGUF(for: "comet quantize")
            let tokenizer = try modelOptions.tokenizer(gguf)
            var tokens = tokenizer.encode(content, addBOS: false, parseSpecial: false)
            if tokens.count > maxTokens { tokens.removeSubrange(maxTokens...) }
            let model = try modelOptions.cpuModel(gguf)
            let evaluator = try orFail("") { try PerplexityEvaluator(model: model, context: ctx, stride: ctx) }

            var observed: ModelCalibration?
            var source = CalibrationSource(text: "")
            if wanted.contains(where: \.method.needsCalibration) {
                let (sequences, s) = try calibration.sequences(tokenizer: tokenizer)
                source = s
                observed = try calibration.calibrate(model: model, sequences: sequences, hessians: wanted.contains(where: \.method.needsHessians))
            }
            print("Evaluation: first \(tokens.count) tokens of \(textPath.split(separator: "/").last ?? ""), ctx \(ctx), stride \(ctx). Calibration: \(source.text).\n")
            print("| row | weights | activations | KV | INT8 blocks / MACs | perplexity | vs FP |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            fflush(nil)
            var checkpoints: [(settings: QuantizeSettings, checkpoint: QuantizedCheckpoint)] = []
            var fp: Double?
            var stderr = StandardError()
            for row in wanted {
                let start = ContinuousClock.now
                var share = "-"
                model.hooks = nil
                switch row.method {
                case .fp:
                    break
                case let .checkpoint(settings, evaluation):
                    let checkpoint: QuantizedCheckpoint
                    if let cached = checkpoints.first(where: { $0.settings == settings }) {
                        checkpoint = cached.checkpoint
                    } else {
                        print("\(row.name): quantizing", to: &stderr)
                        checkpoint = try quantizeModel(model: model, path: modelOptions.path, observed: observed!, settings: settings, source: source)
                        checkpoints.append((settings, checkpoint))
                    }
                    let summary = INT8ShareSummary(checkpoint, layers: model.config.layerCount)
                    share = "\(percent(summary.blocks)) / \(percent(summary.macs))"
                    try orFail("") { try QuantizedModelHooks.install(on: model, checkpoint: checkpoint, evaluation: evaluation) }
                case let .fpKV4(keySmoothing, only, keyRotation):
                    let smoothing = try keySmoothing.map { alpha in
                        try orFail("") {
                            try (0..<model.config.layerCount).map { layer in
                                try ModelQuantizer.keySmoothing(model.config, keyAbsMax: observed!.keys[layer].absMax, alpha: alpha)
                            }
                        }
                    }
                    model.hooks = try orFail("") { try FPKV4Hooks(model: model, keySmoothing: smoothing, quantizes: (only != .values, only != .keys), keyRotation: keyRotation) }
                case let .smoothQuantW8A8(alpha):
                    share = "100% / 100%"
                    model.hooks = try orFail("") { try SmoothQuantHooks(model: model, calibration: observed!, alpha: alpha) }
                }
                print("\(row.name): evaluating", to: &stderr)
                let result = try orFail("") {
                    try evaluator.evaluate(tokens) { p in
                        if p.window % 8 == 0 { print("  window \(p.window)/\(p.windowCount), perplexity \(format2(p.perplexity))", to: &stderr) }
                    }
                }
                model.hooks = nil
                if row.name == "fp" { fp = result.perplexity }
                let delta = fp.map { "+" + percent(result.perplexity / $0 - 1) } ?? "-"
                print("| \(row.name) | \(row.weights) | \(row.activations) | \(row.kv) | \(share) | \(formatFixed(result.perplexity, digits: 2)) | \(row.name == "fp" ? "-" : delta) |")
                fflush(nil)
                print("\(row.name): perplexity \(formatFixed(result.perplexity, digits: 3)) in \(format1(seconds(since: start))) s", to: &stderr)
            }
        }
    }
}

/// One row of the accuracy table: its columns and how the model is run.
struct TableRow {
    var name: String
    var weights: String
    var activations: String
    var kv: String
    var method: Method = .fp

    enum KVPart { case keys, values }

    enum Method {
        /// The model as it is.
        case fp
        /// A checkpoint made by `comet quantize`'s code (in memory), evaluated as `evaluation` says.
        case checkpoint(QuantizeSettings, QuantizedEvaluation)
        /// FP linears, KV4 cache (K only or V only with `only`), K smoothed with this alpha (nil:
        /// not smoothed); `FPKV4Hooks`.
        /// `keyRotation`: keys Hadamard rotated per head before KV4 (`KVCacheSettings.keyRotation`).
        case fpKV4(keySmoothing: Double?, only: KVPart? = nil, keyRotation: Bool = false)
        /// W8A8 with SmoothQuant's smoothing at this alpha; `SmoothQuantHooks`.
        case smoothQuantW8A8(alpha: Double)

        var needsCalibration: Bool {
            if case .fp = self { return false }
            return true
        }

        var needsHessians: Bool {
            if case let .checkpoint(settings, _) = self { return settings.recipe.weightMethod == .gptq }
            return false
        }
    }

    /// The row with its K smoothing (if any) at `alpha`: the table's --key-smoothing-alpha.
    func withKeySmoothing(alpha: Double) -> TableRow {
        var row = self
        switch method {
        case .checkpoint(var settings, let evaluation) where settings.keySmoothing != nil:
            settings.keySmoothing = alpha
            row.method = .checkpoint(settings, evaluation)
        case let .fpKV4(.some, only, keyRotation):
            row.method = .fpKV4(keySmoothing: alpha, only: only, keyRotation: keyRotation)
        default:
            break
        }
        return row
    }

    /// The A4 clip of the unrotated rows (the paper's FMPQ layout): the best of their sweep.
    static let unrotatedClip: Float = 0.8

    /// Unrotated unless asked: the rows of the paper's FMPQ and of the baselines. The `-rot` rows
    /// are `comet quantize`'s defaults (rotation, `FMPQRecipe.defaultInt4Clip`).
    static func recipe(
        _ method: FMPQRecipe.WeightMethod, share: Double, blockSize: Int = 128, criterion: OutlierCriterion = .absMax,
        int4Clip: Float = unrotatedClip, rotation: BlockRotation = .none
    ) -> FMPQRecipe {
        FMPQRecipe(criterion: criterion, budget: .fractionOfBlocks(share), blockSize: blockSize, weightMethod: method, int4Clip: int4Clip,
                   rotation: rotation)
    }

    static func quantized(
        _ name: String, _ weights: String, _ activations: String, _ kv: String,
        recipe: FMPQRecipe, permute: Bool, keySmoothing: Bool = false, linearBudgets: [LinearSlot: INT8Budget] = [:],
        evaluation: QuantizedEvaluation
    ) -> TableRow {
        // The checkpoint's KV settings (KV4, key rotation) do not change its tensors: rows that
        // differ only in KV share one, and `evaluation` says how its cache is run.
        // (K smoothing does; its alpha is the table's --key-smoothing-alpha.)
        TableRow(name: name, weights: weights, activations: activations, kv: kv,
                 method: .checkpoint(QuantizeSettings(recipe: recipe, permute: permute, kv4: false,
                                                      keySmoothing: keySmoothing ? QuantizeSettings.defaultKeySmoothing : nil, keyRotation: false,
                                                      linearBudgets: linearBudgets),
                                     evaluation))
    }

    /// `comet quantize`'s recipe (20% INT8 blocks), with `int4Clip` / `rotation` changed if asked.
    static func defaultRecipe(
        int4Clip: Float = FMPQRecipe.defaultInt4Clip, rotation: BlockRotation = FMPQRecipe.defaultRotation, share: Double = 0.2,
        blockSize: Int = 128, criterion: OutlierCriterion = .absMax
    ) -> FMPQRecipe {
        FMPQRecipe(criterion: criterion, budget: .fractionOfBlocks(share), blockSize: blockSize, int4Clip: int4Clip, rotation: rotation)
    }

    /// In priority order: the headline rows first, then the ablations.
    static let all: [TableRow] = [
        TableRow(name: "fp", weights: "fp32 (dequantized GGUF)", activations: "fp32", kv: "fp32"),
        quantized("w4a4-rtn", "INT4 RTN g128", "A4 per (token, 128), unclipped", "fp32",
                  recipe: recipe(.rtn, share: 0, int4Clip: 1), permute: false, evaluation: .init(activations: .fmpq, kv4: false)),
        quantized("fmpq-w4ax", "INT4 GPTQ g128", "FMPQ A4 + 20% A8 blocks", "fp32",
                  recipe: recipe(.gptq, share: 0.2), permute: true, evaluation: .init(activations: .fmpq, kv4: false)),
        quantized("fmpq-w4axkv4", "INT4 GPTQ g128", "FMPQ A4 + 20% A8 blocks", "KV4",
                  recipe: recipe(.gptq, share: 0.2), permute: true, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("fmpq-w4axkv4-ks", "INT4 GPTQ g128", "FMPQ A4 + 20% A8 blocks", "KV4, K smoothed",
                  recipe: recipe(.gptq, share: 0.2), permute: true, keySmoothing: true, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("w4a8kv4", "INT4 GPTQ g128", "A8 per (token, 128)", "KV4",
                  recipe: recipe(.gptq, share: 1), permute: false, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("w4a8kv4-ks", "INT4 GPTQ g128", "A8 per (token, 128)", "KV4, K smoothed",
                  recipe: recipe(.gptq, share: 1), permute: false, keySmoothing: true, evaluation: .init(activations: .fmpq, kv4: true)),
        TableRow(name: "fp-kv4", weights: "fp32", activations: "fp32", kv: "KV4", method: .fpKV4(keySmoothing: nil)),
        TableRow(name: "fp-kv4-ks", weights: "fp32", activations: "fp32", kv: "KV4, K smoothed",
                 method: .fpKV4(keySmoothing: QuantizeSettings.defaultKeySmoothing)),
        TableRow(name: "fp-k4", weights: "fp32", activations: "fp32", kv: "K in KV4, V fp32", method: .fpKV4(keySmoothing: nil, only: .keys)),
        TableRow(name: "fp-v4", weights: "fp32", activations: "fp32", kv: "V in KV4, K fp32", method: .fpKV4(keySmoothing: nil, only: .values)),
        TableRow(name: "w8a8-smoothquant", weights: "INT8 RTN per channel", activations: "A8 per token, SmoothQuant alpha 0.5",
                 kv: "fp32", method: .smoothQuantW8A8(alpha: 0.5)),
        quantized("atom-w4a4kv4", "INT4 GPTQ g128", "A4 + 128 outlier channels A8, permuted", "KV4",
                  recipe: FMPQRecipe(budget: .outlierChannels(128), rotation: .none), permute: true, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("fmpq-no-perm", "INT4 GPTQ g128", "A4 + last 20% blocks A8, unpermuted", "fp32",
                  recipe: recipe(.gptq, share: 0.2), permute: false, evaluation: .init(activations: .fmpq, kv4: false)),
        quantized("w4a16-gptq", "INT4 GPTQ g128", "fp32", "fp32",
                  recipe: recipe(.gptq, share: 0), permute: false, evaluation: .init(activations: .a16, kv4: false)),
        quantized("w4a16-rtn", "INT4 RTN g128", "fp32", "fp32",
                  recipe: recipe(.rtn, share: 0), permute: false, evaluation: .init(activations: .a16, kv4: false)),
        quantized("fmpq-rtn", "INT4 RTN g128", "FMPQ A4 + 20% A8 blocks", "fp32",
                  recipe: recipe(.rtn, share: 0.2), permute: true, evaluation: .init(activations: .fmpq, kv4: false)),
        quantized("fmpq-30", "INT4 GPTQ g128", "FMPQ A4 + 30% A8 blocks", "fp32",
                  recipe: recipe(.gptq, share: 0.3), permute: true, evaluation: .init(activations: .fmpq, kv4: false)),
        quantized("fmpq-b64-kv4", "INT4 GPTQ g64", "FMPQ A4 + 20% A8 blocks of 64", "KV4",
                  recipe: recipe(.gptq, share: 0.2, blockSize: 64), permute: true, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("fmpq-rms", "INT4 GPTQ g128", "FMPQ A4 + 20% A8 blocks (rms criterion)", "fp32",
                  recipe: recipe(.gptq, share: 0.2, criterion: .rms), permute: true, evaluation: .init(activations: .fmpq, kv4: false)),
        // Hadamard-rotated A4 blocks (BlockRotation.int4) at the default clip: what `comet quantize` makes.
        quantized("fmpq-w4ax-rot", "INT4 GPTQ g128", "FMPQ A4 (Hadamard rotated) + 20% A8 blocks", "fp32",
                  recipe: defaultRecipe(), permute: true, evaluation: .init(activations: .fmpq, kv4: false)),
        quantized("fmpq-w4axkv4-rot", "INT4 GPTQ g128", "FMPQ A4 (Hadamard rotated) + 20% A8 blocks", "KV4",
                  recipe: defaultRecipe(), permute: true, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("fmpq-w4axkv4-rot-ks", "INT4 GPTQ g128", "FMPQ A4 (Hadamard rotated) + 20% A8 blocks", "KV4, K smoothed",
                  recipe: defaultRecipe(), permute: true, keySmoothing: true, evaluation: .init(activations: .fmpq, kv4: true)),
        // The rotated baselines (every block rotated, as QServe rotates its W4A8 inputs).
        quantized("w4a8kv4-rot", "INT4 GPTQ g128", "A8 per (token, 128), Hadamard rotated", "KV4",
                  recipe: recipe(.gptq, share: 1, rotation: .all), permute: false, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("w4a16-gptq-rot", "INT4 GPTQ g128, Hadamard rotated", "fp32", "fp32",
                  recipe: recipe(.gptq, share: 0, rotation: .all), permute: false, evaluation: .init(activations: .a16, kv4: false)),
        quantized("fmpq-w4axkv4-rotall", "INT4 GPTQ g128", "FMPQ A4 + 20% A8 blocks, all Hadamard rotated", "KV4",
                  recipe: defaultRecipe(rotation: .all), permute: true, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("fmpq-w4axkv4-rot-clip0.8-ks", "INT4 GPTQ g128", "FMPQ A4 (Hadamard rotated, clip 0.8) + 20% A8 blocks", "KV4, K smoothed",
                  recipe: defaultRecipe(int4Clip: 0.8), permute: true, keySmoothing: true, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("fmpq-w4axkv4-rot-rms", "INT4 GPTQ g128, rotated", "FMPQ A4 (rotated) + 20% A8 blocks (rms criterion)", "KV4",
                  recipe: defaultRecipe(criterion: .rms), permute: true, evaluation: .init(activations: .fmpq, kv4: true)),
        quantized("fmpq-w4axkv4-rot-b64", "INT4 GPTQ g64, rotated", "FMPQ A4 (rotated) + 20% A8 blocks of 64", "KV4",
                  recipe: defaultRecipe(blockSize: 64), permute: true, evaluation: .init(activations: .fmpq, kv4: true)),
        // Keys Hadamard rotated per head after RoPE before KV4 (`comet quantize`'s default).
        TableRow(name: "fp-kv4-kr", weights: "fp32", activations: "fp32", kv: "KV4, keys rotated", method: .fpKV4(keySmoothing: nil, keyRotation: true)),
        TableRow(name: "fp-k4-kr", weights: "fp32", activations: "fp32", kv: "K in KV4 (rotated), V fp32",
                 method: .fpKV4(keySmoothing: nil, only: .keys, keyRotation: true)),
        quantized("fmpq-w4axkv4-rot-kr", "INT4 GPTQ g128", "FMPQ A4 (Hadamard rotated) + 20% A8 blocks", "KV4, keys rotated",
                  recipe: defaultRecipe(), permute: true, evaluation: .init(activations: .fmpq, kv4: true, keyRotation: true)),
        quantized("w4a8kv4-rot-kr", "INT4 GPTQ g128", "A8 per (token, 128), Hadamard rotated", "KV4, keys rotated",
                  recipe: recipe(.gptq, share: 1, rotation: .all), permute: false, evaluation: .init(activations: .fmpq, kv4: true, keyRotation: true)),
        quantized("fmpq-w4axkv4-kr", "INT4 GPTQ g128", "FMPQ A4 + 20% A8 blocks", "KV4, keys rotated",
                  recipe: recipe(.gptq, share: 0.2), permute: true, evaluation: .init(activations: .fmpq, kv4: true, keyRotation: true)),
        quantized("w4a8kv4-kr", "INT4 GPTQ g128", "A8 per (token, 128)", "KV4, keys rotated",
                  recipe: recipe(.gptq, share: 1), permute: false, evaluation: .init(activations: .fmpq, kv4: true, keyRotation: true)),
        // Per-linear INT8 budgets (`comet quantize --int8-share-of`): the default recipe with
        // gate_up's input (and down's) all A8, which Hopper's s8 GEMM runs at A4's speed.
        quantized("fmpq-w4axkv4-a8gu", "INT4 GPTQ g128", "FMPQ A4 (rotated) + 20% A8 blocks; gate_up input all A8", "KV4, keys rotated",
                  recipe: defaultRecipe(), permute: true, linearBudgets: [.gateUp: .fractionOfBlocks(1)],
                  evaluation: .init(activations: .fmpq, kv4: true, keyRotation: true)),
        quantized("fmpq-w4axkv4-a8gu-down", "INT4 GPTQ g128", "FMPQ A4 (rotated) + 20% A8 blocks; gate_up and down inputs all A8", "KV4, keys rotated",
                  recipe: defaultRecipe(), permute: true, linearBudgets: [.gateUp: .fractionOfBlocks(1), .down: .fractionOfBlocks(1)],
                  evaluation: .init(activations: .fmpq, kv4: true, keyRotation: true)),
    ] + [0.1, 0.3].map { share in
        quantized("fmpq-w4axkv4-rot-\(Int(share * 100))", "INT4 GPTQ g128, rotated", "FMPQ A4 (rotated) + \(Int(share * 100))% A8 blocks", "KV4",
                  recipe: defaultRecipe(share: share), permute: true, evaluation: .init(activations: .fmpq, kv4: true))
    } + [Float(1), 0.95, 0.8].map { clip in
        quantized("fmpq-w4axkv4-rot-clip\(clip)", "INT4 GPTQ g128", "FMPQ A4 (Hadamard rotated, clip \(clip)) + 20% A8 blocks", "KV4",
                  recipe: defaultRecipe(int4Clip: clip), permute: true, evaluation: .init(activations: .fmpq, kv4: true))
    } + [Float(1), 0.9, 0.7].map { clip in
        // The A4 clip ratio (FMPQLayout.int4Clip) of the unrotated rows: their 0.8 against these.
        quantized("fmpq-w4axkv4-clip\(clip)", "INT4 GPTQ g128", "FMPQ A4 (clip \(clip)) + 20% A8 blocks", "KV4",
                  recipe: recipe(.gptq, share: 0.2, int4Clip: clip), permute: true, evaluation: .init(activations: .fmpq, kv4: true))
    }
}
