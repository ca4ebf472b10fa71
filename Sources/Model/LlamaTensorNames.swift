/// The tensor names of a `llama` GGUF file, so that no other code spells them out.
///
///     let wq = try gguf.requireTensor(LlamaTensorNames.layer(3).query)   // "blk.3.attn_q.weight"
public enum LlamaTensorNames {
    /// [dim, vocab]: row t is the embedding of token t.
    public static let tokenEmbedding = "token_embd.weight"
    /// [dim]: the final RMS norm.
    public static let outputNorm = "output_norm.weight"
    /// [dim, vocab]: the LM head; absent when tied to `tokenEmbedding`.
    public static let output = "output.weight"
    /// [ropeDimensions / 2]: Llama 3.1 per-frequency scaling divisors; absent in most files.
    public static let ropeFrequencies = "rope_freqs.weight"

    /// The names of the tensors of layer `index`.
    public static func layer(_ index: Int) -> Layer { Layer(index: index) }

    /// The GGUF name of `tensor`.
    public static func name(of tensor: LlamaTensor) -> String {
        switch tensor {
        case .tokenEmbedding: return tokenEmbedding
        case .outputNorm: return outputNorm
        case .output: return output
        case let .layer(index, part):
            let names = layer(index)
            switch part {
            case .attentionNorm: return names.attentionNorm
            case .query: return names.query
            case .key: return names.key
            case .value: return names.value
            case .queryBias: return names.queryBias
            case .keyBias: return names.keyBias
            case .valueBias: return names.valueBias
            case .attentionOutput: return names.attentionOutput
            case .ffnNorm: return names.ffnNorm
            case .ffnGate: return names.ffnGate
            case .ffnUp: return names.ffnUp
            case .ffnDown: return names.ffnDown
            }
        }
    }

    /// Tensor names of one transformer block ("blk.N.*").
    public struct Layer: Sendable, Equatable {
        public let index: Int

        /// [dim]: RMS norm before attention.
        public var attentionNorm: String { name("attn_norm") }
        /// [dim, heads * headDim]
        public var query: String { name("attn_q") }
        /// [dim, kvHeads * headDim]
        public var key: String { name("attn_k") }
        /// [dim, kvHeads * headDim]
        public var value: String { name("attn_v") }
        /// [heads * headDim]: Qwen2's q/k/v biases.
        public var queryBias: String { "blk.\(index).attn_q.bias" }
        /// [kvHeads * headDim]
        public var keyBias: String { "blk.\(index).attn_k.bias" }
        /// [kvHeads * headDim]
        public var valueBias: String { "blk.\(index).attn_v.bias" }
        /// [heads * headDim, dim]
        public var attentionOutput: String { name("attn_output") }
        /// [dim]: RMS norm before the feed-forward block.
        public var ffnNorm: String { name("ffn_norm") }
        /// [dim, ffnDim]
        public var ffnGate: String { name("ffn_gate") }
        /// [dim, ffnDim]
        public var ffnUp: String { name("ffn_up") }
        /// [ffnDim, dim]
        public var ffnDown: String { name("ffn_down") }

        private func name(_ part: String) -> String { "blk.\(index).\(part).weight" }
    }
}
