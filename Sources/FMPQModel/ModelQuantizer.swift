import CPUBackend
import Model
import Quant

/// Everything `quantize` decides for a whole model: the FMPQ recipe applied to every linear,
/// whether channels are permuted, and the KV cache format the checkpoint asks for.
public struct QuantizeSettings: Sendable, Equatable {
    public var recipe: FMPQRecipe
    /// false: the identity permutation with the budget's INT8 block count, i.e. whatever
    /// channels happen to be last go to INT8 (the "without permutation" ablation).
    public var permute: Bool
    /// Whether the checkpoint's KV cache is KV4 (`KV4`) or fp16.
    public var kv4: Bool

    public init(recipe: FMPQRecipe = FMPQRecipe(), permute: Bool = true, kv4: Bool = true) {
        self.recipe = recipe
        self.permute = permute
        self.kv4 = kv4
    }
}

/// Where the calibration text came from, for the manifest.
public struct CalibrationSource: Sendable, Equatable {
    /// e.g. "web-calibration.txt (WEB Genesis-Acts), 64 windows spread over 1,016,211 tokens".
    public var text: String
    public init(text: String) { self.text = text }
}

/// Turns a calibrated FP model into a `QuantizedCheckpoint`: every linear of every layer
/// through `FMPQRecipe.quantize` (permutation from the calibration statistics, INT4 weights by
/// GPTQ or RTN), plus the manifest's config, tokenizer reference and calibration settings.
///
/// The checkpoint holds the linear layers only. The embeddings, norms and LM head, which FMPQ
/// keeps in floating point, are read from the model file it was made from (the manifest's
/// tokenizer reference names that file and its SHA-256, and loading checks both).
public enum ModelQuantizer {
    public static func quantize(
        model: LlamaCPUModel, calibration: ModelCalibration, settings: QuantizeSettings,
        modelFile: String, modelFileSHA256: String?, source: CalibrationSource,
        progress: (_ layer: Int, _ layers: Int) -> Void = { _, _ in }
    ) throws -> QuantizedCheckpoint {
        let recipe = settings.recipe
        var checkpoint = QuantizedCheckpoint(
            model: configJSON(model.config),
            tokenizer: .init(kind: "gguf", source: modelFile, sha256: modelFileSHA256),
            calibration: .init(
                text: source.text + (settings.permute ? "" : "; no permutation (identity)"),
                tokens: calibration.tokens, contextLength: calibration.contextLength,
                excludesSink: true, recipe: recipe),
            kvCache: .init(bits: settings.kv4 ? 4 : 16, keySmoothing: false))
        for layer in 0..<model.config.layerCount {
            for slot in LinearSlot.allCases {
                let shape = model.linearShape(slot)
                let observed = calibration[layer, slot]
                let weights = model.linearWeights(layer: layer, slot: slot)
                let (int4, permutation): (Int4Weights, FMPQPermutation)
                if settings.permute {
                    (int4, permutation) = try recipe.quantize(
                        weights: weights, outputs: shape.outDim, statistics: observed.statistics, hessian: observed.hessian)
                } else {
                    // The budget's block count, but on the channels in their original order.
                    let chosen = try FMPQPermutation(statistics: observed.statistics, criterion: recipe.criterion,
                                                     budget: recipe.budget, blockSize: recipe.blockSize)
                    permutation = FMPQPermutation.identity(layout: chosen.layout)
                    switch recipe.weightMethod {
                    case .rtn:
                        int4 = try Int4Weights(roundingToNearest: weights, outputs: shape.outDim, layout: permutation.layout)
                    case .gptq:
                        guard let hessian = observed.hessian else {
                            throw QuantError.shapeMismatch("GPTQ needs the Hessians; calibrate with them")
                        }
                        int4 = try recipe.gptq.quantize(weights, outputs: shape.outDim, hessian: hessian.matrix, layout: permutation.layout)
                    }
                }
                try checkpoint.addLinear(slot.name(layer: layer), weights: int4, permutation: permutation)
            }
            progress(layer + 1, model.config.layerCount)
        }
        return checkpoint
    }

    /// Whether two recorded configs agree. JSON does not keep 100000.0 apart from 100000, so
    /// numbers compare by value whichever case decoding chose.
    public static func sameConfig(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.int(x), .number(y)), let (.number(y), .int(x)): return Double(x) == y
        case let (.object(x), .object(y)):
            return x.keys.sorted() == y.keys.sorted() && x.allSatisfy { key, value in sameConfig(value, y[key]!) }
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { sameConfig($0, $1) }
        default: return a == b
        }
    }

    /// The model config as the checkpoint records it (and `QuantizedModel` checks it against).
    public static func configJSON(_ c: ModelConfig) -> JSONValue {
        .object([
            "architecture": .string(c.architecture), "vocabularySize": .int(c.vocabularySize), "dim": .int(c.dim),
            "layerCount": .int(c.layerCount), "headCount": .int(c.headCount), "kvHeadCount": .int(c.kvHeadCount),
            "headDim": .int(c.headDim), "ffnDim": .int(c.ffnDim), "ropeBase": .number(c.ropeBase),
            "rmsNormEpsilon": .number(c.rmsNormEpsilon), "contextLength": .int(c.contextLength),
        ])
    }
}

/// The INT8 share of a checkpoint, per layer and overall: what `quantize` prints and the
/// accuracy table reports (the paper: under 20% of blocks, 16% on average).
public struct INT8ShareSummary: Sendable {
    /// Per transformer layer: INT8 blocks / blocks over its four linears.
    public var perLayer: [Double]
    /// Over every linear: INT8 blocks / blocks.
    public var blocks: Double
    /// Over every linear: INT8 MACs / MACs (blocks weighted by their layer's outputs).
    public var macs: Double

    public init(_ checkpoint: QuantizedCheckpoint, layers: Int) {
        var perLayer: [Double] = []
        var int8 = 0, all = 0, int8MACs = 0, allMACs = 0
        for layer in 0..<layers {
            var layerInt8 = 0, layerAll = 0
            for slot in LinearSlot.allCases {
                guard let record = checkpoint.layers[slot.name(layer: layer)] else { continue }
                let blocks = (record.inputChannels + record.blockSize - 1) / record.blockSize
                layerInt8 += record.int8Blocks
                layerAll += blocks
                int8MACs += record.int8Blocks * record.outputs
                allMACs += blocks * record.outputs
            }
            int8 += layerInt8
            all += layerAll
            perLayer.append(layerAll > 0 ? Double(layerInt8) / Double(layerAll) : 0)
        }
        self.perLayer = perLayer
        blocks = all > 0 ? Double(int8) / Double(all) : 0
        macs = allMACs > 0 ? Double(int8MACs) / Double(allMACs) : 0
    }
}
