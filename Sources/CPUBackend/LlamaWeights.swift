import Model

/// The weights of a llama model, dequantized once to fp32 at load.
///
/// NOTES: fp32 costs 4 bytes per parameter (SmolLM2-135M: about 540 MB, beside the 98 MB file) but makes
/// every kernel a plain fp32 dot product whose result matches a numpy fp32 reference of the dequantized
/// model to rounding, which is what this backend is for. Decode then streams all weights once per token;
/// on a 2-core machine that is fast enough for SmolLM2 (see bench/results). The GGUF mapping is not kept.
///
/// Matrices are row-major [out, in] (GGML's [in, out] with `in` contiguous is exactly that), so output
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
        /// [dim, heads * headDim]
        let attentionOutput: FloatBuffer
        /// [dim]
        let ffnNorm: FloatBuffer
        /// [2 * ffnDim, dim]: gate rows, then up rows.
        let gateUp: FloatBuffer
        /// [dim, ffnDim]
        let down: FloatBuffer
    }

    /// Reads and dequantizes every tensor of `config` from `gguf` (checked against the config first),
    /// layers in parallel.
    init(gguf: GGUFFile, config: ModelConfig, parallel: ParallelLoop) throws {
        try config.checkTensors(in: gguf)
        let dim = config.dim, qDim = config.headCount * config.headDim, kvDim = config.kvHeadCount * config.headDim

        /// Dequantizes the named tensors one after another into one buffer.
        func load(_ names: [String]) throws -> FloatBuffer {
            let tensors = try names.map { try gguf.requireTensor($0) }
            let buffer = FloatBuffer(count: tensors.reduce(0) { $0 + $1.elementCount })
            var offset = 0
            for tensor in tensors {
                try gguf.dequantize(tensor, into: buffer.slice(offset..<(offset + tensor.elementCount)))
                offset += tensor.elementCount
            }
            return buffer
        }

        tokenEmbedding = try load([LlamaTensorNames.tokenEmbedding])
        output = config.tiedEmbeddings ? tokenEmbedding : try load([LlamaTensorNames.output])
        outputNorm = try load([LlamaTensorNames.outputNorm])
        ropeFrequencyFactors = try gguf.tensor(named: LlamaTensorNames.ropeFrequencies).map { try gguf.dequantize($0) }

        // Each layer is independent: dequantize them concurrently, collecting results and errors by index.
        let results = LayerResults(count: config.layerCount)
        parallel.run(config.layerCount) { index in
            let names = LlamaTensorNames.layer(index)
            results.set(index, Result {
                Layer(
                    attentionNorm: try load([names.attentionNorm]),
                    qkv: try load([names.query, names.key, names.value]),
                    attentionOutput: try load([names.attentionOutput]),
                    ffnNorm: try load([names.ffnNorm]),
                    gateUp: try load([names.ffnGate, names.ffnUp]),
                    down: try load([names.ffnDown]))
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
