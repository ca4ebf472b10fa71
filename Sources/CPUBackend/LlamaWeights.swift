import Model

/// The weights of a llama model, dequantized (or converted from f16/bf16) once to fp32 at load.
///
/// NOTES: fp32 costs 4 bytes per parameter (SmolLM2-135M: about 540 MB, beside the 98 MB file) but makes
/// every kernel a plain fp32 dot product whose result matches a numpy fp32 reference of the dequantized
/// model to rounding, which is what this backend is for. Decode then streams all weights once per token;
/// on a 2-core machine that is fast enough for SmolLM2 (see bench/results). The source's file mapping is not
/// kept, so the model is held once, in fp32.
///
/// Matrices are row-major [out, in] (GGML's [in, out] with `in` contiguous and Hugging Face's [out, in]
/// are both exactly that), so output
/// channel o is the contiguous row o. Projections that read the same input are stored fused, one
/// matmul each: [q; k; v] and [gate; up].
final class LlamaWeights: @unchecked Sendable {
    // @unchecked: buffers are written only during init and read-only afterwards.

    /// [vocab, dim]: row t is the embedding of token t.
    let tokenEmbedding: FloatBuffer
    /// [vocab, dim]: the LM head (the same buffer as `tokenEmbedding` when tied).
    let output: FloatBuffer
    /// [dim]
    let outputNorm: FloatBuffer
    let layers: [Layer]
    /// Llama 3.1's RoPE frequency divisors ([ropeDimensions / 2]), when the file has them.
    let ropeFrequencyFactors: [Float]?

    struct Layer: @unchecked Sendable {
        /// [dim]
        let attentionNorm: FloatBuffer
        /// [(heads + 2 * kvHeads) * headDim, dim]: q rows, then k rows, then v rows.
        let qkv: FloatBuffer
        /// [(heads + 2 * kvHeads) * headDim]: the q, k and v biases (Qwen2), nil when the model has none.
        let qkvBias: FloatBuffer?
        /// [dim, heads * headDim]
        let attentionOutput: FloatBuffer
        /// [dim]
        let ffnNorm: FloatBuffer
        /// [2 * ffnDim, dim]: gate rows, then up rows.
        let gateUp: FloatBuffer
        /// [dim, ffnDim]
        let down: FloatBuffer
    }

    /// Reads every tensor of `source.config` into fp32 (checked against the config first), layers in parallel.
    init(source: any LlamaWeightSource, parallel: ParallelLoop) throws {
        let config = source.config
        try source.checkTensors()
        let dim = config.dim, qDim = config.headCount * config.headDim, kvDim = config.kvHeadCount * config.headDim

        /// Reads the tensors one after another into one buffer.
        func load(_ tensors: [LlamaTensor]) throws -> FloatBuffer {
            let counts = tensors.map { source.shape(of: $0)!.reduce(1, *) }  // present: checkTensors passed
            let buffer = FloatBuffer(count: counts.reduce(0, +))
            var offset = 0
            for (tensor, count) in zip(tensors, counts) {
                try source.read(tensor, into: buffer.slice(offset..<(offset + count)))
                offset += count
            }
            return buffer
        }

        tokenEmbedding = try load([.tokenEmbedding])
        output = config.tiedEmbeddings ? tokenEmbedding : try load([.output])
        outputNorm = try load([.outputNorm])
        ropeFrequencyFactors = try source.ropeFrequencyFactors()

        // Each layer is independent: convert them concurrently, collecting results and errors by index.
        let results = LayerResults(count: config.layerCount)
        parallel.run(config.layerCount) { i in
            results.set(i, Result {
                Layer(
                    attentionNorm: try load([.layer(i, .attentionNorm)]),
                    qkv: try load([.layer(i, .query), .layer(i, .key), .layer(i, .value)]),
                    qkvBias: config.attentionBias ? try load([.layer(i, .queryBias), .layer(i, .keyBias), .layer(i, .valueBias)]) : nil,
                    attentionOutput: try load([.layer(i, .attentionOutput)]),
                    ffnNorm: try load([.layer(i, .ffnNorm)]),
                    gateUp: try load([.layer(i, .ffnGate), .layer(i, .ffnUp)]),
                    down: try load([.layer(i, .ffnDown)]))
            })
        }
        layers = try results.values.map { try $0!.get() }
        assert(layers.allSatisfy { $0.qkv.count == (qDim + 2 * kvDim) * dim })
    }

    /// One slot per layer, each written by exactly one thread (raw storage: no array copy-on-write
    /// bookkeeping between threads).
    private final class LayerResults: @unchecked Sendable {
        private let slots: UnsafeMutableBufferPointer<Result<Layer, any Error>?>
        init(count: Int) {
            slots = .allocate(capacity: count)
            slots.initialize(repeating: nil)
        }
        deinit {
            _ = slots.deinitialize()
            slots.deallocate()
        }
        func set(_ index: Int, _ value: Result<Layer, any Error>) { slots[index] = value }
        var values: [Result<Layer, any Error>?] { Array(slots) }
    }
}
