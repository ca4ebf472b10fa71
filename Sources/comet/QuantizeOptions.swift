import ArgumentParser
import CPUBackend
import FMPQModel
import Model
import Quant

/// Where calibration text comes from and how much of it: shared by `quantize` and `eval table`.
struct CalibrationOptions: ParsableArguments {
    @Option(help: "Calibration text (default: web-calibration.txt of scripts/fetch-eval-text.sh, WEB Genesis-Acts).")
    var calibrationText: String?

    @Option(help: "Calibration sequences, spread evenly over the text.")
    var calibrationSequences = 64

    @Option(help: "Tokens per calibration sequence.")
    var calibrationLength = 512

    func validate() throws {
        if calibrationSequences < 1 { throw ValidationError("--calibration-sequences must be at least 1") }
        if calibrationLength < 2 { throw ValidationError("--calibration-length must be at least 2") }
    }

    var path: String { calibrationText ?? DefaultModel.assetsFolder() + "/web-calibration.txt" }

    /// Tokenizes the text and cuts the sequences; returns them and the manifest's description.
    func sequences(tokenizer: any Tokenizer) throws -> (sequences: [[Int32]], source: CalibrationSource) {
        let bytes = try orFail("") { try readFile(path) }
        guard let content = String(validating: bytes, as: UTF8.self) else { throw fail("\(path) is not UTF-8 text") }
        let tokens = tokenizer.encode(content, addBOS: false, parseSpecial: false)
        guard tokens.count >= calibrationLength else {
            throw fail("\(path) has \(tokens.count) tokens, fewer than --calibration-length \(calibrationLength)")
        }
        let sequences = Calibrator.sequences(from: tokens, count: calibrationSequences, length: calibrationLength)
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return (sequences, CalibrationSource(text: "\(name): \(sequences.count) windows of \(calibrationLength) tokens spread over its \(tokens.count) tokens"))
    }

    /// Runs calibration with progress on stderr.
    func calibrate(model: LlamaCPUModel, sequences: [[Int32]], hessians: Bool) throws -> ModelCalibration {
        var stderr = StandardError()
        let start = ContinuousClock.now
        return try orFail("calibration") {
            try Calibrator.calibrate(model: model, sequences: sequences, hessians: hessians) { done, total in
                if done == total || done % max(1, total / 8) == 0 {
                    print("calibration: \(done)/\(total) sequences, \(format1(seconds(since: start))) s", to: &stderr)
                }
            }
        }
    }
}

/// The FMPQ choices of `quantize`, one flag each.
struct RecipeOptions: ParsableArguments {
    @Option(help: "Fraction of each layer's blocks in INT8 (the paper: under 20%).")
    var int8Share = 0.2

    @Option(help: "Instead of a fixed share: channels above this multiple of the layer's median score are outliers (capped at --int8-share).")
    var int8Threshold: Double?

    @Option(name: .customLong("int8-share-of"), help: ArgumentHelp(
        "One kind of linear's INT8 share in every layer, in place of --int8-share / --int8-threshold: KIND=SHARE, KIND one of qkv, o, gate_up, down; repeatable.",
        discussion: "On Hopper an A8 block costs the GEMM what an A4 block does, so the most sensitive input can take more: on SmolLM2 gate_up=1 brings W4AxKV4 from 33.86 to 30.95 (bench/results/accuracy-smollm2.md).",
        valueName: "kind=share"))
    var int8ShareOf: [LinearINT8Share] = []

    @Option(help: "Outlier criterion: absMax or rms.")
    var criterion: OutlierCriterion = .absMax

    @Option(help: "Weight rounding: gptq or rtn.")
    var weights: FMPQRecipe.WeightMethod = .gptq

    @Option(help: "Channels per block (and per weight scale group): 128 or 64.")
    var blockSize = 128

    @Option(help: "A4 activation clip ratio in (0, 1]: each A4 block's scale is (abs-max * ratio) / 7 (1: no clipping).")
    var a4Clip: Float = FMPQRecipe.defaultInt4Clip

    @Option(help: "Walsh-Hadamard rotation of whole blocks (activations H·x before their scale is taken, weights W·H / n), which spreads a block's largest values over all of its channels: none, int4 (the A4 blocks) or all.")
    var rotation: BlockRotation = FMPQRecipe.defaultRotation

    @Flag(help: "Keep channels in their original order (ablation: INT8 blocks take whatever channels are last).")
    var noPermutation = false

    @Flag(inversion: .prefixedNo, help: "KV cache format the checkpoint asks for: KV4 (default) or fp16.")
    var kv4 = true

    // Off by default: on SmolLM2 it helped FP + KV4 a little but not FMPQ W4AxKV4
    // (bench/results/accuracy-smollm2.md).
    @Flag(inversion: .prefixedNo, help: "Fold per-channel K smoothing, calibrated on K after RoPE, into the q/k weights so KV4 sees flatter keys (default: off; not for models with q/k biases).")
    var keySmoothing = false

    @Option(help: "K smoothing strength in 0...1: each RoPE channel pair of K is divided by (its calibration abs-max)^alpha, the queries multiplied by it.")
    var keySmoothingAlpha = QuantizeSettings.defaultKeySmoothing

    @Flag(inversion: .prefixedNo, help: "KV4: Hadamard-rotate each key head after RoPE before it is quantized (queries rotated alike, so q·k is unchanged), which spreads K's outlier channels over the head (default: on; needs a power-of-two head size).")
    var keyRotation = QuantizeSettings.defaultKeyRotation

    @Option(help: "The tensor parallelism the checkpoint will serve at (serve --tensor-parallel): o and down are permuted per GPU so each GPU's share is whole FMPQ blocks. A checkpoint for N also serves at any divisor of N.")
    var tensorParallel = 1

    func validate() throws {
        if !(1...64).contains(tensorParallel) { throw ValidationError("--tensor-parallel must be from 1 to 64") }
        if !(0...1).contains(int8Share) { throw ValidationError("--int8-share must be in 0...1") }
        if blockSize != 64 && blockSize != 128 { throw ValidationError("--block-size must be 64 or 128") }
        if !(a4Clip > 0 && a4Clip <= 1) { throw ValidationError("--a4-clip must be in (0, 1]") }
        if let int8Threshold, int8Threshold <= 0 { throw ValidationError("--int8-threshold must be positive") }
        if !(0...1).contains(keySmoothingAlpha) { throw ValidationError("--key-smoothing-alpha must be in 0...1") }
        let kinds = int8ShareOf.map(\.slot)
        if Set(kinds).count != kinds.count { throw ValidationError("--int8-share-of names a linear kind twice") }
    }

    /// The settings `quantize` applies (K smoothing on a model with q/k biases is refused by
    /// `ModelQuantizer`, with the reason).
    var settings: QuantizeSettings {
        let budget: INT8Budget = int8Threshold.map { .threshold(ratio: $0, maxFraction: int8Share) } ?? .fractionOfBlocks(int8Share)
        return QuantizeSettings(
            recipe: FMPQRecipe(criterion: criterion, budget: budget, blockSize: blockSize, weightMethod: weights, int4Clip: a4Clip,
                                 rotation: rotation),
            permute: !noPermutation, kv4: kv4,
            keySmoothing: keySmoothing ? keySmoothingAlpha : nil, keyRotation: keyRotation,
            linearBudgets: Dictionary(uniqueKeysWithValues: int8ShareOf.map { ($0.slot, .fractionOfBlocks($0.share)) }),
            tensorParallel: tensorParallel)
    }
}

extension OutlierCriterion: ExpressibleByArgument {}
extension BlockRotation: ExpressibleByArgument {}
extension FMPQRecipe.WeightMethod: ExpressibleByArgument {}
extension QuantizedLinear.Activations: ExpressibleByArgument {}

/// "12.3%"
func percent(_ x: Double) -> String { formatFixed(100 * x, digits: 1) + "%" }

/// `--int8-share-of KIND=SHARE`: one kind of linear's INT8 share of blocks, in 0...1.
struct LinearINT8Share: ExpressibleByArgument, Equatable {
    let slot: LinearSlot
    let share: Double

    init?(argument: String) {
        let parts = argument.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2, let slot = LinearSlot(kindName: String(parts[0])), let share = Double(parts[1]),
              (0...1).contains(share) else { return nil }
        self.slot = slot
        self.share = share
    }
}
