import ArgumentParser
import CPUBackend
import FMPQModel
import Model
import Quant

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Calibrate and quantize a model to an FMPQ W4Ax checkpoint (CPU).",
        discussion: """
            Runs the model over calibration text, chooses each linear's outlier channels and permutation, rounds \
            the weights to INT4 (GPTQ or RTN) and writes a checkpoint folder atomically. Embeddings, norms and the \
            LM head stay in the model file, which the manifest names with its SHA-256. Progress on stderr; the \
            per-layer INT8 share on stdout.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var calibration: CalibrationOptions
    @OptionGroup var recipe: RecipeOptions

    @Option(help: "Checkpoint folder to write.")
    var out: String

    @Flag(help: "Replace an existing checkpoint at --out.")
    var overwrite = false

    func run() throws {
        let gguf = try modelOptions.openGGUF(for: "comet quantize")
        let tokenizer = try modelOptions.tokenizer(gguf)
        let model = try modelOptions.cpuModel(gguf)
        let settings = recipe.settings
        let (sequences, source) = try calibration.sequences(tokenizer: tokenizer)
        let observed = try calibration.calibrate(model: model, sequences: sequences, hessians: settings.recipe.weightMethod == .gptq)
        let checkpoint = try quantizeModel(model: model, path: modelOptions.path, observed: observed, settings: settings, source: source)
        var stderr = StandardError()
        try orFail("") {
            try checkpoint.write(to: out, replacing: overwrite)
        }
        print("wrote \(out)", to: &stderr)
        let summary = INT8ShareSummary(checkpoint, layers: model.config.layerCount)
        print("INT8 share per layer (blocks of q/k/v, o, gate/up, down): "
            + summary.perLayer.enumerated().map { "\($0.offset): \(percent($0.element))" }.joined(separator: ", "))
        print("INT8 share: \(percent(summary.blocks)) of blocks, \(percent(summary.macs)) of MACs")
    }
}

/// The checkpoint of `model` for `settings`, with progress on stderr.
func quantizeModel(
    model: LlamaCPUModel, path: String, observed: ModelCalibration, settings: QuantizeSettings, source: CalibrationSource
) throws -> QuantizedCheckpoint {
    var stderr = StandardError()
    let digest = try orFail("") { try BaseModelFile.sha256(path: path) }
    let start = ContinuousClock.now
    return try orFail("quantize") {
        try ModelQuantizer.quantize(
            model: model, calibration: observed, settings: settings, modelFile: path, modelFileSHA256: digest, source: source
        ) { layer, layers in
            if layer == layers || layer % 5 == 0 { print("quantize: layer \(layer)/\(layers), \(format1(seconds(since: start))) s", to: &stderr) }
        }
    }
}
