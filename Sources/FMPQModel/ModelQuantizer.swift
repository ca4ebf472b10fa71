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
    /// The alpha of per-channel K smoothing folded into q/k (`KeySmoothing`), nil for none.
    public var keySmoothing: Double?
    /// With `kv4`: keys Hadamard rotated per head after RoPE (`KVCacheSettings.keyRotation`). It
    /// changes no tensor, only how the cache stores K. SmolLM2, 4,096 evaluation tokens: FP with
    /// KV4 27.78 -> 26.38 rotated (FP 25.31), FMPQ W4AxKV4 34.84 -> 33.86; bench/results/accuracy-smollm2.md.
    public var keyRotation: Bool
    /// INT8 budgets that replace the recipe's for one kind of linear in every layer. On Hopper an
    /// A8 block costs what an A4 block does in the GEMM (both run on s8 wgmma; the large-M
    /// kernel's tiles hold A4 codes as bytes), so more INT8 on the most sensitive input buys
    /// accuracy for little: SmolLM2 W4AxKV4, gate_up's input all A8, 33.86 -> 30.95
    /// (bench/results/accuracy-smollm2.md). On Ampere/Ada it costs INT4 tensor-core speed.
    public var linearBudgets: [LinearSlot: INT8Budget]
    /// The tensor parallelism the checkpoint will run at: o and down are permuted shard by shard
    /// (`FMPQSharding.swift`) so that every rank's cut is a valid FMPQ layout. 1 for one GPU; a
    /// checkpoint made for N also runs at any divisor of N.
    public var tensorParallel: Int

    /// K smoothing's alpha when it is asked for. FP + KV4 on 2,048 evaluation tokens (16
    /// calibration windows; FP 26.75, no smoothing 29.35): alpha 0.125 28.67, 0.25 28.64, 0.5
    /// 28.92, 0.75 28.84, 1 28.94 (bench/results/accuracy-smollm2.md). `quantize` leaves
    /// smoothing off by default: it did not help FMPQ W4AxKV4 there.
    public static let defaultKeySmoothing = 0.25

    /// `quantize` rotates keys unless told not to.
    public static let defaultKeyRotation = true

    public init(
        recipe: FMPQRecipe = FMPQRecipe(), permute: Bool = true, kv4: Bool = true, keySmoothing: Double? = nil,
        keyRotation: Bool = QuantizeSettings.defaultKeyRotation, linearBudgets: [LinearSlot: INT8Budget] = [:],
        tensorParallel: Int = 1
    ) {
        self.recipe = recipe
        self.linearBudgets = linearBudgets
        self.permute = permute
        self.kv4 = kv4
        self.keySmoothing = keySmoothing
        self.keyRotation = keyRotation
        self.tensorParallel = tensorParallel
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
        let ranks = settings.tensorParallel
        try TensorParallelShard.check(model.config, ranks: ranks)
        if ranks > 1, !settings.permute {
            throw QuantError.invalidLayout("the identity permutation puts every INT8 block on the last tensor-parallel rank; quantize with permutation for --tensor-parallel \(ranks)")
        }
        var checkpoint = QuantizedCheckpoint(
            model: configJSON(model.config),
            tokenizer: .init(kind: "gguf", source: modelFile, sha256: modelFileSHA256),
            calibration: .init(
                text: source.text + (settings.permute ? "" : "; no permutation (identity)")
                    + (ranks > 1 ? "; o and down permuted per shard for \(ranks)-way tensor parallelism" : ""),
                tokens: calibration.tokens, contextLength: calibration.contextLength,
                excludesSink: true, recipe: recipe,
                linearBudgets: settings.linearBudgets.isEmpty
                    ? nil : Dictionary(uniqueKeysWithValues: settings.linearBudgets.map { ($0.key.kindName, $0.value) })),
            kvCache: .init(bits: settings.kv4 ? 4 : 16, keySmoothing: settings.keySmoothing != nil,
                           keySmoothingAlpha: settings.keySmoothing,
                           keySmoothingFactors: settings.keySmoothing.map { _ in (0..<model.config.layerCount).map(keySmoothingTensor) },
                           keyRotation: settings.kv4 && settings.keyRotation))
        if settings.kv4, settings.keyRotation { try checkKeyRotation(model.config) }
        if settings.keySmoothing != nil, model.config.attentionBias {
            // The biases stay in the model file, which every loader reads them from: folded
            // weights with unfolded biases would change q·k.
            throw QuantError.shapeMismatch("K smoothing folds into q/k weights only, and this model has q/k biases; quantize without K smoothing")
        }
        for layer in 0..<model.config.layerCount {
            let smoothing = try settings.keySmoothing.map { alpha in
                try keySmoothing(model.config, keyAbsMax: calibration.keys[layer].absMax, alpha: alpha)
            }
            if let smoothing {
                try checkpoint.addTensor(keySmoothingTensor(layer: layer), Tensor(smoothing.factors, shape: [smoothing.factors.count]))
            }
            for slot in LinearSlot.allCases {
                let shape = model.linearShape(slot)
                let observed = calibration[layer, slot]
                var weights = model.linearWeights(layer: layer, slot: slot)
                // Scaling whole output rows commutes with the per-(output, block) weight scales,
                // GPTQ (its Hessian is over inputs) and the activation quantization: only K changes.
                if slot == .qkv, let smoothing {
                    try smoothing.fold(intoQKV: &weights, inputs: shape.inDim, heads: model.config.headCount)
                }
                var linearRecipe = recipe
                if let budget = settings.linearBudgets[slot] { linearRecipe.budget = budget }
                let (int4, permutation): (Int4Weights, FMPQPermutation)
                if settings.permute {
                    (int4, permutation) = try linearRecipe.quantize(
                        weights: weights, outputs: shape.outDim, statistics: observed.statistics, hessian: observed.hessian,
                        shards: slot.isRowParallel ? ranks : 1)
                } else {
                    // The budget's block count, but on the channels in their original order.
                    let chosen = try FMPQPermutation(statistics: observed.statistics, criterion: linearRecipe.criterion,
                                                     budget: linearRecipe.budget, blockSize: linearRecipe.blockSize)
                    permutation = FMPQPermutation.identity(layout: try linearRecipe.int4Treatment(chosen.layout))
                    int4 = try linearRecipe.quantize(weights: weights, outputs: shape.outDim, permutation: permutation, hessian: observed.hessian)
                }
                try checkpoint.addLinear(slot.name(layer: layer), weights: int4, permutation: permutation)
            }
            progress(layer + 1, model.config.layerCount)
        }
        return checkpoint
    }

    /// Key rotation needs a power-of-two head size (the Hadamard matrix of `BlockHadamard`).
    public static func checkKeyRotation(_ config: ModelConfig) throws {
        let d = config.headDim
        guard d > 0, d & (d - 1) == 0 else {
            throw QuantError.invalidLayout("key rotation needs a power-of-two head size, this model's is \(d); quantize with --no-key-rotation")
        }
    }

    /// The checkpoint tensor of layer `layer`'s K smoothing factors.
    public static func keySmoothingTensor(layer: Int) -> String { "blk.\(layer).attn_k.smoothing" }

    /// The K smoothing of one layer from its calibrated post-RoPE K abs-max, paired as the
    /// model's RoPE pairs channels.
    public static func keySmoothing(_ config: ModelConfig, keyAbsMax: [Float], alpha: Double) throws -> KeySmoothing {
        try KeySmoothing(keyAbsMax: keyAbsMax, headDim: config.headDim, partner: ropePartners(config), alpha: alpha)
    }

    /// [headDim]: the channel RoPE rotates each channel of a head with (itself past the rotated dims).
    public static func ropePartners(_ config: ModelConfig) -> [Int] {
        let rotated = config.ropeDimensions, pairs = rotated / 2
        return (0..<config.headDim).map { c in
            guard c < rotated else { return c }
            switch config.ropeConvention {
            case .adjacentPairs: return c ^ 1
            case .halves: return c < pairs ? c + pairs : c - pairs
            }
        }
    }

    /// The K smoothing a checkpoint records for `layer`, checked against `config` (nil when the
    /// checkpoint has none).
    public static func keySmoothing(_ checkpoint: QuantizedCheckpoint, layer: Int, config: ModelConfig) throws -> KeySmoothing? {
        guard checkpoint.kvCache.keySmoothing else { return nil }
        guard let names = checkpoint.kvCache.keySmoothingFactors, names.count == config.layerCount, let tensor = checkpoint.tensors[names[layer]] else {
            throw QuantError.shapeMismatch("the checkpoint's K smoothing does not name factors for each of the model's \(config.layerCount) layers")
        }
        let factors = try tensor.values(as: Float.self)
        guard factors.count == config.kvHeadCount * config.headDim else {
            throw QuantError.shapeMismatch("\(names[layer]) has \(factors.count) K smoothing factors, the model has \(config.kvHeadCount * config.headDim) K channels")
        }
        return try KeySmoothing(factors: factors, headDim: config.headDim, partner: ropePartners(config))
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
