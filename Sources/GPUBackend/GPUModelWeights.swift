import CPUBackend
import CPUReference
import CUDA
import FMPQModel
import Kernels
import Model
import Quant

/// Every weight of a llama-architecture model on the GPU, and the KV cache format it runs with.
///
/// Three sources: an FMPQ checkpoint (INT4 linears) with its base model file (the tensors FMPQ keeps in
/// floating point: embeddings, norms, LM head, biases); a float model converted to bf16 (the
/// unquantized baseline); or random weights of a given shape made from a seed (speed only).
public final class GPUModelWeights: @unchecked Sendable {
    // @unchecked: written only during init, read-only afterwards.
    public let config: ModelConfig
    /// The KV cache format that goes with these weights (KV4 for an FMPQ checkpoint made with it).
    public let kvFormat: PagedKVCache.Format
    /// With KV4: keys Hadamard rotated per head after RoPE (`KVCacheSettings.keyRotation`).
    public let rotatesKeys: Bool
    /// [vocab, dim] bf16.
    let embedding: DeviceBuffer<BFloat16>
    /// [vocab, dim] bf16; the same buffer as `embedding` when tied.
    let lmHead: DeviceBuffer<BFloat16>
    /// [dim]
    let outputNorm: DeviceBuffer<Float>
    let layers: [Layer]
    /// Llama 3.1's RoPE frequency divisors, when the model has them.
    let ropeFrequencyFactors: [Float]?

    struct Layer: Sendable {
        /// [dim]
        let attentionNorm: DeviceBuffer<Float>
        /// outputs (heads + 2 kvHeads) * headDim: q rows, k rows, v rows.
        let qkv: GPULinear
        /// [(heads + 2 kvHeads) * headDim] (Qwen2), nil when the model has none.
        let qkvBias: DeviceBuffer<Float>?
        let attentionOutput: GPULinear
        /// [dim]
        let ffnNorm: DeviceBuffer<Float>
        /// outputs 2 * ffnDim: gate rows, then up rows.
        let gateUp: GPULinear
        let down: GPULinear
    }

    /// Device bytes of all weights.
    public var bytes: Int {
        let shared = embedding.byteCount + (lmHead === embedding ? 0 : lmHead.byteCount) + outputNorm.byteCount
        return layers.reduce(shared) { total, layer in
            total + layer.attentionNorm.byteCount + layer.ffnNorm.byteCount + (layer.qkvBias?.byteCount ?? 0)
                + layer.qkv.bytes + layer.attentionOutput.bytes + layer.gateUp.bytes + layer.down.bytes
        }
    }

    /// Whether the linears are FMPQ W4Ax (else bf16).
    public var isQuantized: Bool { layers.first?.qkv.isQuantized ?? false }

    private init(
        config: ModelConfig, kvFormat: PagedKVCache.Format, rotatesKeys: Bool = false, embedding: DeviceBuffer<BFloat16>,
        lmHead: DeviceBuffer<BFloat16>, outputNorm: DeviceBuffer<Float>, layers: [Layer], ropeFrequencyFactors: [Float]?
    ) {
        self.config = config
        self.kvFormat = kvFormat
        self.rotatesKeys = kvFormat == .kv4 && rotatesKeys
        self.embedding = embedding
        self.lmHead = lmHead
        self.outputNorm = outputNorm
        self.layers = layers
        self.ropeFrequencyFactors = ropeFrequencyFactors
    }

    /// Checks what the GPU kernels support.
    static func checkSupported(_ config: ModelConfig) throws {
        try config.validate()
        guard config.headDim == 64 || config.headDim == 128 else {
            throw GPUBackendError.unsupported("head dimension \(config.headDim) (the GPU kernels take 64 or 128)")
        }
        guard config.ropeDimensions == config.headDim else {
            throw GPUBackendError.unsupported("partial rotary embeddings (\(config.ropeDimensions) of \(config.headDim) dimensions)")
        }
        guard config.dim % 8 == 0, config.ffnDim % 8 == 0 else {
            throw GPUBackendError.unsupported("dim \(config.dim) / ffn \(config.ffnDim) not multiples of 8")
        }
    }

    /// An FMPQ checkpoint's INT4 linears with the float tensors of its base model.
    /// - Parameter kv4: run the KV cache in KV4 (the checkpoint's setting when nil).
    public convenience init(checkpoint: QuantizedCheckpoint, base: any LlamaWeightSource, kv4: Bool? = nil, context: CUDAContext) throws {
        let config = base.config
        try Self.checkSupported(config)
        try base.checkTensors()
        let floats = FloatTensorLoader(source: base, context: context)
        var layers: [Layer] = []
        for l in 0..<config.layerCount {
            func linear(_ slot: LinearSlot) throws -> GPULinear {
                let (weights, permutation) = try checkpoint.linear(slot.name(layer: l))
                let (inDim, outDim) = Self.shape(slot, config)
                guard weights.layout.inputChannels == inDim, weights.outputs == outDim else {
                    throw GPUBackendError.badWeights("\(slot.name(layer: l)) is \(weights.outputs) x \(weights.layout.inputChannels), the model needs \(outDim) x \(inDim)")
                }
                let perm = try context.allocate(Int32.self, count: inDim)
                try perm.copy(from: permutation.permutation)
                return .w4ax(try W4AxWeights(weights, context: context), permutation: perm)
            }
            layers.append(Layer(
                attentionNorm: try floats.float32([.layer(l, .attentionNorm)]),
                qkv: try linear(.qkv),
                qkvBias: config.attentionBias ? try floats.float32([.layer(l, .queryBias), .layer(l, .keyBias), .layer(l, .valueBias)]) : nil,
                attentionOutput: try linear(.attentionOutput),
                ffnNorm: try floats.float32([.layer(l, .ffnNorm)]),
                gateUp: try linear(.gateUp),
                down: try linear(.down)))
        }
        let embedding = try floats.bf16([.tokenEmbedding])
        self.init(
            config: config, kvFormat: (kv4 ?? (checkpoint.kvCache.bits == 4)) ? .kv4 : .bf16, rotatesKeys: checkpoint.kvCache.rotatesKeys,
            embedding: embedding,
            lmHead: config.tiedEmbeddings ? embedding : try floats.bf16([.output]), outputNorm: try floats.float32([.outputNorm]),
            layers: layers, ropeFrequencyFactors: try base.ropeFrequencyFactors())
    }

    /// The float model in `source`, every weight in bf16 (the unquantized baseline).
    public convenience init(bf16 source: any LlamaWeightSource, kvFormat: PagedKVCache.Format = .bf16, context: CUDAContext) throws {
        let config = source.config
        try Self.checkSupported(config)
        try source.checkTensors()
        let floats = FloatTensorLoader(source: source, context: context)
        var layers: [Layer] = []
        for l in 0..<config.layerCount {
            func linear(_ slot: LinearSlot, _ tensors: [LlamaTensor]) throws -> GPULinear {
                let (inDim, outDim) = Self.shape(slot, config)
                return .bf16(try floats.bf16(tensors), outputs: outDim, inputs: inDim)
            }
            layers.append(Layer(
                attentionNorm: try floats.float32([.layer(l, .attentionNorm)]),
                qkv: try linear(.qkv, [.layer(l, .query), .layer(l, .key), .layer(l, .value)]),
                qkvBias: config.attentionBias ? try floats.float32([.layer(l, .queryBias), .layer(l, .keyBias), .layer(l, .valueBias)]) : nil,
                attentionOutput: try linear(.attentionOutput, [.layer(l, .attentionOutput)]),
                ffnNorm: try floats.float32([.layer(l, .ffnNorm)]),
                gateUp: try linear(.gateUp, [.layer(l, .ffnGate), .layer(l, .ffnUp)]),
                down: try linear(.down, [.layer(l, .ffnDown)])))
        }
        let embedding = try floats.bf16([.tokenEmbedding])
        self.init(
            config: config, kvFormat: kvFormat, embedding: embedding,
            lmHead: config.tiedEmbeddings ? embedding : try floats.bf16([.output]), outputNorm: try floats.float32([.outputNorm]),
            layers: layers, ropeFrequencyFactors: try source.ropeFrequencyFactors())
    }

    /// Random weights of `config`'s shape, made on the GPU from `seed`: W4Ax linears with
    /// `int8Share` of each linear's input blocks in INT8 (rounded to whole blocks) and KV4, or
    /// bf16 linears and bf16 KV (`quantized: false`, the baseline). Values are scaled so that
    /// activations stay O(1) through the layers; only speed is meaningful.
    public static func synthetic(
        config: ModelConfig, quantized: Bool, int8Share: Double = 0.16, seed: UInt64, context: CUDAContext
    ) throws -> GPUModelWeights {
        try checkSupported(config)
        let filler = SyntheticFiller(seed: seed, context: context)
        func linear(_ slot: LinearSlot) throws -> GPULinear {
            let (inDim, outDim) = shape(slot, config)
            // Uniform codes in [-8, 7] have variance ~21: scale so each output has variance ~1.
            let scale = Float(1 / (21.0 * Double(inDim)).squareRoot())
            guard quantized else {
                let w = try context.allocate(BFloat16.self, count: outDim * inDim)
                try filler.bf16(w, magnitude: scale * 8)
                return .bf16(w, outputs: outDim, inputs: inDim)
            }
            let blocks = (inDim + 127) / 128
            // The A4 clip and rotation of `comet quantize`'s recipe, so the quantize kernels do its work.
            let layout = try FMPQLayout(inputChannels: inDim, int8Blocks: min(blocks, Int((Double(blocks) * int8Share).rounded())),
                                        int4Clip: FMPQRecipe.defaultInt4Clip, rotation: FMPQRecipe.defaultRotation)
            let tiles = (outDim + 15) / 16
            let packed = try context.allocate(UInt8.self, count: tiles * 16 * layout.paddedChannels / 2)
            try filler.bytes(packed)
            let scales = try context.allocate(Float16.self, count: tiles * 16 * layout.blockCount)
            try filler.constant(scales, Float16(scale))
            let perm = try context.allocate(Int32.self, count: inDim)
            try perm.copy(from: (0..<Int32(inDim)).shuffled(using: &filler.random))
            return .w4ax(try W4AxWeights(layout: layout, outputs: outDim, packed: packed, scales: scales), permutation: perm)
        }
        func ones(_ n: Int) throws -> DeviceBuffer<Float> {
            let b = try context.allocate(Float.self, count: n)
            try filler.constant(b, 1)
            return b
        }
        var layers: [Layer] = []
        for _ in 0..<config.layerCount {
            layers.append(Layer(
                attentionNorm: try ones(config.dim), qkv: try linear(.qkv), qkvBias: nil,
                attentionOutput: try linear(.attentionOutput), ffnNorm: try ones(config.dim),
                gateUp: try linear(.gateUp), down: try linear(.down)))
        }
        let embedding = try context.allocate(BFloat16.self, count: config.vocabularySize * config.dim)
        try filler.bf16(embedding, magnitude: 1)
        let lmHead: DeviceBuffer<BFloat16>
        if config.tiedEmbeddings { lmHead = embedding } else {
            lmHead = try context.allocate(BFloat16.self, count: config.vocabularySize * config.dim)
            try filler.bf16(lmHead, magnitude: Float(1 / Double(config.dim).squareRoot()))
        }
        return GPUModelWeights(
            config: config, kvFormat: quantized ? .kv4 : .bf16, rotatesKeys: quantized && QuantizeSettings.defaultKeyRotation,
            embedding: embedding, lmHead: lmHead,
            outputNorm: try ones(config.dim), layers: layers, ropeFrequencyFactors: nil)
    }

    /// (inputs, outputs) of a linear slot.
    static func shape(_ slot: LinearSlot, _ c: ModelConfig) -> (inDim: Int, outDim: Int) {
        let qDim = c.headCount * c.headDim, kvDim = c.kvHeadCount * c.headDim
        switch slot {
        case .qkv: return (c.dim, qDim + 2 * kvDim)
        case .attentionOutput: return (qDim, c.dim)
        case .gateUp: return (c.dim, 2 * c.ffnDim)
        case .down: return (c.ffnDim, c.dim)
        }
    }
}

/// Reads float tensors from a model file and uploads them as fp32 or bf16.
private struct FloatTensorLoader {
    let source: any LlamaWeightSource
    let context: CUDAContext

    /// The tensors, concatenated, as fp32 on the host.
    func host(_ tensors: [LlamaTensor]) throws -> [Float] {
        let counts = tensors.map { source.shape(of: $0)!.reduce(1, *) }  // present: checkTensors passed
        var values = [Float](repeating: 0, count: counts.reduce(0, +))
        var offset = 0
        for (tensor, count) in zip(tensors, counts) {
            try values.withUnsafeMutableBufferPointer { all in
                try source.read(tensor, into: UnsafeMutableBufferPointer(rebasing: all[offset..<(offset + count)]))
            }
            offset += count
        }
        return values
    }

    func float32(_ tensors: [LlamaTensor]) throws -> DeviceBuffer<Float> {
        let values = try host(tensors)
        let buffer = try context.allocate(Float.self, count: values.count)
        try buffer.copy(from: values)
        return buffer
    }

    func bf16(_ tensors: [LlamaTensor]) throws -> DeviceBuffer<BFloat16> {
        let values = try host(tensors).map { BFloat16($0) }
        let buffer = try context.allocate(BFloat16.self, count: values.count)
        try buffer.copy(from: values)
        return buffer
    }
}

/// Random device contents from a seed: a host tile of random values repeated over the buffer.
private final class SyntheticFiller {
    var random: SplitMix64
    let context: CUDAContext
    let stream: CUDAStream

    init(seed: UInt64, context: CUDAContext) {
        random = SplitMix64(seed: seed)
        self.context = context
        stream = try! context.makeStream()
    }

    func bytes(_ buffer: DeviceBuffer<UInt8>) throws {
        try repeatTile(buffer) { n in (0..<n).map { _ in UInt8.random(in: 0...255, using: &random) } }
    }

    func bf16(_ buffer: DeviceBuffer<BFloat16>, magnitude: Float) throws {
        try repeatTile(buffer) { n in (0..<n).map { _ in BFloat16(Float.random(in: -magnitude...magnitude, using: &random)) } }
    }

    func constant<T: BitwiseCopyable>(_ buffer: DeviceBuffer<T>, _ value: T) throws {
        try repeatTile(buffer) { n in [T](repeating: value, count: n) }
    }

    /// Uploads a tile of up to 4 Mi elements and copies it over the whole buffer (prime-sized so
    /// rows of typical widths do not repeat in lockstep).
    private func repeatTile<T: BitwiseCopyable>(_ buffer: DeviceBuffer<T>, _ make: (Int) -> [T]) throws {
        guard buffer.count > 0 else { return }
        let tileCount = min(buffer.count, 4_194_301)
        let tile = try context.allocate(T.self, count: tileCount)
        try tile.copy(from: make(tileCount))
        let tileBytes = tileCount * MemoryLayout<T>.stride
        var offset = 0
        while offset < buffer.byteCount {
            let n = min(tileBytes, buffer.byteCount - offset)
            try context.copy(bytes: n, from: tile.pointer, to: buffer.pointer + DevicePointer(offset), on: stream)
            offset += n
        }
        try stream.synchronize()
    }
}

/// Why the GPU backend cannot run a model or a step; `description` is the message to print.
public enum GPUBackendError: Error, CustomStringConvertible, Equatable {
    case unsupported(String)
    case badWeights(String)
    case badStep(String)
    case outOfMemory(String)

    public var description: String {
        switch self {
        case let .unsupported(what): "the GPU backend does not support \(what)"
        case let .badWeights(what): "bad weights: \(what)"
        case let .badStep(what): "bad step: \(what)"
        case let .outOfMemory(what): "out of GPU memory: \(what)"
        }
    }
}
