import Model

/// The activations of one forward chunk, allocated once for `maxTokens` tokens so that the forward
/// pass never allocates. Only the attention scores grow, the first time a longer cache is used.
final class ForwardScratch {
    let maxTokens: Int
    /// [maxTokens, dim]: the residual stream.
    let residual: FloatBuffer
    /// [maxTokens, dim]: the normed residual, input of the projections.
    let normed: FloatBuffer
    /// [maxTokens, (heads + 2 * kvHeads) * headDim]: q, k and v of each token.
    let qkv: FloatBuffer
    /// [maxTokens, heads * headDim]
    let attention: FloatBuffer
    /// [maxTokens, 2 * ffnDim]: gate and up of each token.
    let gateUp: FloatBuffer
    /// [maxTokens, ffnDim]
    let hidden: FloatBuffer
    /// [maxTokens, ropeDimensions / 2]: RoPE tables of the chunk's positions.
    let ropeCos: FloatBuffer
    let ropeSin: FloatBuffer
    /// [maxTokens]: which piece of the chunk (`ChunkPiece`) each row belongs to.
    let rowPiece: UnsafeMutablePointer<Int32>
    /// [attentionTasks, positions]: one row of softmax scores per attention task.
    private var scores: FloatBuffer

    init(config: ModelConfig, maxTokens: Int) {
        self.maxTokens = maxTokens
        let qDim = config.headCount * config.headDim, kvDim = config.kvHeadCount * config.headDim
        residual = FloatBuffer(count: maxTokens * config.dim)
        normed = FloatBuffer(count: maxTokens * config.dim)
        qkv = FloatBuffer(count: maxTokens * (qDim + 2 * kvDim))
        attention = FloatBuffer(count: maxTokens * qDim)
        gateUp = FloatBuffer(count: maxTokens * 2 * config.ffnDim)
        hidden = FloatBuffer(count: maxTokens * config.ffnDim)
        ropeCos = FloatBuffer(count: maxTokens * config.ropeDimensions / 2)
        ropeSin = FloatBuffer(count: maxTokens * config.ropeDimensions / 2)
        rowPiece = .allocate(capacity: maxTokens)
        rowPiece.initialize(repeating: 0, count: maxTokens)
        scores = FloatBuffer(count: 0)
    }

    deinit {
        rowPiece.deallocate()
    }

    /// Score rows for `tasks` tasks of `rowLength` positions each; grows only when more are needed.
    func scores(tasks: Int, rowLength: Int) -> UnsafeMutablePointer<Float> {
        if tasks * rowLength > scores.count { scores = FloatBuffer(count: tasks * rowLength) }
        return scores.pointer
    }
}
