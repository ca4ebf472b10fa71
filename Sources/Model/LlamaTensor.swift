/// Every weight the llama forward pass reads, named by its role rather than by any file's spelling:
/// a GGUF file calls the first query projection "blk.0.attn_q.weight", a Hugging Face checkpoint
/// "model.layers.0.self_attn.q_proj.weight" (`LlamaWeightSource.name(of:)` spells it per format).
public enum LlamaTensor: Hashable, Sendable {
    /// [vocab, dim]: row t is the embedding of token t.
    case tokenEmbedding
    /// [dim]: the final RMS norm.
    case outputNorm
    /// [vocab, dim]: the LM head; absent when tied to `tokenEmbedding`.
    case output
    /// A weight of transformer block `layer`.
    case layer(Int, Layer)

    /// The weights of one transformer block.
    public enum Layer: String, CaseIterable, Sendable {
        /// [dim]: RMS norm before attention.
        case attentionNorm
        /// [heads * headDim, dim]
        case query
        /// [kvHeads * headDim, dim]
        case key
        /// [kvHeads * headDim, dim]
        case value
        /// [heads * headDim]: Qwen2's query bias.
        case queryBias
        /// [kvHeads * headDim]
        case keyBias
        /// [kvHeads * headDim]
        case valueBias
        /// [dim, heads * headDim]
        case attentionOutput
        /// [dim]: RMS norm before the feed-forward block.
        case ffnNorm
        /// [ffnDim, dim]
        case ffnGate
        /// [ffnDim, dim]
        case ffnUp
        /// [dim, ffnDim]
        case ffnDown
    }
}

extension ModelConfig {
    /// Every tensor the forward pass of this config reads, with its row-major shape ([out, in] for
    /// matrices, PyTorch order; GGML lists the same dimensions reversed).
    public var expectedTensors: [(tensor: LlamaTensor, shape: [Int])] {
        let qDim = headCount * headDim, kvDim = kvHeadCount * headDim
        var shapes: [(LlamaTensor, [Int])] = [(.tokenEmbedding, [vocabularySize, dim])]
        for i in 0..<layerCount {
            shapes += [
                (.layer(i, .attentionNorm), [dim]),
                (.layer(i, .query), [qDim, dim]),
                (.layer(i, .key), [kvDim, dim]),
                (.layer(i, .value), [kvDim, dim]),
            ]
            if attentionBias {
                shapes += [(.layer(i, .queryBias), [qDim]), (.layer(i, .keyBias), [kvDim]), (.layer(i, .valueBias), [kvDim])]
            }
            shapes += [
                (.layer(i, .attentionOutput), [dim, qDim]),
                (.layer(i, .ffnNorm), [dim]),
                (.layer(i, .ffnGate), [ffnDim, dim]),
                (.layer(i, .ffnUp), [ffnDim, dim]),
                (.layer(i, .ffnDown), [dim, ffnDim]),
            ]
        }
        shapes.append((.outputNorm, [dim]))
        if !tiedEmbeddings { shapes.append((.output, [vocabularySize, dim])) }
        return shapes
    }
}

/// Where the llama forward pass reads its weights from: a GGUF file (`GGUFWeights`) or a Hugging Face
/// folder (`HuggingFaceModel`). Data stays in the mapped file until `read` converts one tensor to fp32.
public protocol LlamaWeightSource: Sendable {
    var config: ModelConfig { get }
    /// The tensor's name in this format, for error messages.
    func name(of tensor: LlamaTensor) -> String
    /// The tensor's row-major shape ([out, in] for matrices), or nil when the source does not have it.
    func shape(of tensor: LlamaTensor) -> [Int]?
    /// Writes all elements of `tensor` as Floats, row-major ([out, in]: output channel o is the
    /// contiguous row o), into `output`, which holds exactly its element count.
    func read(_ tensor: LlamaTensor, into output: UnsafeMutableBufferPointer<Float>) throws
    /// Llama 3.1's per-frequency RoPE divisors ([ropeDimensions / 2]) when the config's scaling uses
    /// them, else nil.
    func ropeFrequencyFactors() throws -> [Float]?
    /// Throws `missingTensor` or `unexpectedTensorShape` unless every tensor the config needs is present
    /// with its expected shape (the default checks row-major shapes; GGUF reports them in GGML order).
    func checkTensors() throws
}

extension LlamaWeightSource {
    /// Checks the row-major shape of every tensor the config needs.
    public func checkTensors() throws {
        for (tensor, expected) in config.expectedTensors {
            guard let found = shape(of: tensor) else { throw ModelError.missingTensor(name(of: tensor)) }
            guard found == expected else {
                throw ModelError.unexpectedTensorShape(tensor: name(of: tensor), expected: expected, found: found)
            }
        }
    }

}
