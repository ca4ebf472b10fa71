import Glibc
import Model

/// Which positions of a forward call get logits.
public enum LogitsSelection: Sendable {
    /// The last token only (generation): `vocab` logits.
    case last
    /// Every token (perplexity): `tokens * vocab` logits, row t for token t.
    case all
    /// None (a prefill chunk that does not end its prompt): saves the LM head.
    case skip
}

/// A llama-architecture model (Llama 2/3, SmolLM2, TinyLlama, Mistral, Qwen2) run on the CPU in fp32.
///
/// One `forward` call runs a batch of tokens of one sequence at explicit positions against a `KVCache`
/// the caller owns: a whole prompt (prefill) or one token (decode) alike. The serving engine's
/// `forward(_:kv:logits:)` runs several sequences in one call over a `PagedKVStore`, their rows
/// sharing every linear. Batches longer than `maxBatchTokens` run in chunks. Activations live in
/// preallocated scratch, so a call allocates little (a few bookkeeping arrays; `logits` only when it
/// has the wrong size); that scratch also makes the model serve one forward call at a time.
///
///     let model = try LlamaCPUModel(weights: openModel(path).weights)   // a GGUF file or an HF folder
///     let cache = model.makeCache(capacity: 2048)
///     var logits: [Float] = []
///     try model.forward(prompt, at: 0, cache: cache, logits: &logits)          // prefill
///     try model.forward([next], at: prompt.count, cache: cache, logits: &logits) // decode
public final class LlamaCPUModel {
    public let config: ModelConfig
    /// The most tokens one internal chunk runs (the scratch size).
    public let maxBatchTokens: Int
    /// Threads the kernels use.
    public var threads: Int { parallel.threads }

    private let weights: LlamaWeights
    private let rope: RotaryEmbedding
    private let parallel: ParallelLoop
    /// Observes or replaces the linears and K/V of every forward call (calibration, quantized
    /// evaluation); nil runs the plain fp32 model.
    public var hooks: (any ForwardHooks)?
    /// Set when this model is one rank's share of a tensor-parallel model (its weights a
    /// `ShardedWeightSource`): o and down then give partial sums, which this reducer sums over the
    /// ranks before the residual add. nil for a whole model.
    public var partialSums: (any PartialSumReducer)?
    private let scratch: ForwardScratch

    /// Loads and dequantizes the model in `gguf` (`ModelConfig` says what is accepted).
    /// - Parameters:
    ///   - threads: kernel threads (default: the online CPU count).
    ///   - maxBatchTokens: the chunk size of long batches; scratch grows linearly with it.
    public convenience init(gguf: GGUFFile, threads: Int? = nil, maxBatchTokens: Int = 128) throws {
        try self.init(weights: GGUFWeights(file: gguf), threads: threads, maxBatchTokens: maxBatchTokens)
    }

    /// Loads the tensors of `config` from `gguf`.
    public convenience init(gguf: GGUFFile, config: ModelConfig, threads: Int? = nil, maxBatchTokens: Int = 128) throws {
        try self.init(weights: GGUFWeights(file: gguf, config: config), threads: threads, maxBatchTokens: maxBatchTokens)
    }

    /// Loads every weight of `weights.config` from `weights` (a GGUF file or a Hugging Face folder) into
    /// fp32; the source can be released afterwards.
    public init(weights source: any LlamaWeightSource, threads: Int? = nil, maxBatchTokens: Int = 128) throws {
        let config = source.config
        try config.validate()
        precondition(maxBatchTokens > 0, "LlamaCPUModel: maxBatchTokens must be positive")
        self.config = config
        self.maxBatchTokens = maxBatchTokens
        parallel = ParallelLoop(threads: threads ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        weights = try LlamaWeights(source: source, parallel: parallel)
        rope = try RotaryEmbedding(config: config, frequencyFactors: weights.ropeFrequencyFactors)
        scratch = ForwardScratch(config: config, maxTokens: maxBatchTokens)
    }

    /// An empty KV cache for `capacity` positions of this model.
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(config: config, capacity: capacity)
    }

    /// Runs `tokens` at positions `position ..< position + tokens.count`, appending their keys and
    /// values to `cache` (which must hold at least `position` tokens; later entries are overwritten),
    /// and writes the logits `selection` asks for into `logits` (resized when its count differs).
    public func forward(
        _ tokens: some RandomAccessCollection<Int32>, at position: Int, cache: KVCache,
        logits: inout [Float], for selection: LogitsSelection = .last
    ) throws {
        let count = tokens.count
        guard count > 0 else { throw CPUBackendError.unsupported("a forward call with no tokens") }
        guard position >= 0, position <= cache.count else {
            throw CPUBackendError.positionGap(position: position, cached: cache.count)
        }
        guard position + count <= cache.capacity else {
            throw CPUBackendError.contextFull(needed: position + count, capacity: cache.capacity)
        }
        guard cache.layerCount == config.layerCount, cache.kvDim == config.kvHeadCount * config.headDim else {
            throw CPUBackendError.cacheMismatch(
                "\(cache.layerCount) layers of width \(cache.kvDim), the model has \(config.layerCount) of width \(config.kvHeadCount * config.headDim)")
        }
        try checkTokens(tokens)
        let segment = ForwardSegment(storage: cache, firstPosition: position, count: count, logits: selection)
        run([segment], token: { _, offset in tokens[tokens.index(tokens.startIndex, offsetBy: offset)] }, logits: &logits)
        cache.count = position + count
    }

    /// Throws `tokenOutOfRange` for the first id outside the vocabulary.
    func checkTokens(_ tokens: some Sequence<Int32>) throws {
        for id in tokens where id < 0 || Int(id) >= config.vocabularySize {
            throw CPUBackendError.tokenOutOfRange(id: id, vocabularySize: config.vocabularySize)
        }
    }

    /// Runs the rows of `segments` (already checked by the caller), in chunks of at most
    /// `maxBatchTokens` rows, and writes their logits rows in segment order into `logits`.
    /// `token(segment, offset)` is the id of a segment's `offset`-th token.
    func run<Storage: KVStorage>(
        _ segments: [ForwardSegment<Storage>], token: (_ segment: Int, _ offset: Int) -> Int32, logits: inout [Float]
    ) {
        let vocab = config.vocabularySize
        let logitRows = segments.reduce(0) { $0 + $1.logitRows }
        if logits.count != logitRows * vocab { logits = [Float](repeating: 0, count: logitRows * vocab) }
        var pieces: [ChunkPiece] = []
        var rows = 0, outputRow = 0
        for (s, segment) in segments.enumerated() {
            var offset = 0
            while offset < segment.count {
                let n = min(segment.count - offset, maxBatchTokens - rows)
                pieces.append(ChunkPiece(segment: s, row: rows, count: n, offset: offset, position: segment.firstPosition + offset))
                rows += n
                offset += n
                if rows == maxBatchTokens {
                    runChunk(pieces, rows: rows, segments: segments, token: token, logits: &logits, outputRow: &outputRow)
                    pieces.removeAll(keepingCapacity: true)
                    rows = 0
                }
            }
        }
        if rows > 0 { runChunk(pieces, rows: rows, segments: segments, token: token, logits: &logits, outputRow: &outputRow) }
    }

    /// One chunk: embeddings, every layer, then the logits of the rows that want them, written from
    /// row `outputRow` of `logits` on (which it advances).
    private func runChunk<Storage: KVStorage>(
        _ pieces: [ChunkPiece], rows n: Int, segments: [ForwardSegment<Storage>],
        token: (_ segment: Int, _ offset: Int) -> Int32, logits: inout [Float], outputRow: inout Int
    ) {
        let dim = config.dim, pairs = config.ropeDimensions / 2
        let s = scratch
        // x: [n, dim] = the embeddings of the chunk's tokens; RoPE tables of each row's position.
        for (p, piece) in pieces.enumerated() {
            for i in 0..<piece.count {
                let id = Int(token(piece.segment, piece.offset + i))
                (s.residual.pointer + (piece.row + i) * dim).update(from: weights.tokenEmbedding.pointer + id * dim, count: dim)
                s.rowPiece[piece.row + i] = Int32(p)
            }
            rope.fillTables(firstPosition: piece.position, tokens: piece.count,
                            cos: s.ropeCos.pointer + piece.row * pairs, sin: s.ropeSin.pointer + piece.row * pairs)
        }
        runLayers(pieces, rows: n, segments: segments)

        // The rows that want logits, final-normed into consecutive rows of `normed`, then one LM head matmul.
        var wanted = 0
        for piece in pieces {
            let segment = segments[piece.segment]
            let rows: Range<Int> = switch segment.logits {
            case .all: piece.row..<(piece.row + piece.count)
            case .last where piece.offset + piece.count == segment.count: (piece.row + piece.count - 1)..<(piece.row + piece.count)
            default: 0..<0
            }
            CPUKernels.rmsNorm(s.residual.pointer + rows.lowerBound * dim, tokens: rows.count, dim: dim,
                               weight: weights.outputNorm.pointer, epsilon: Float(config.rmsNormEpsilon),
                               into: s.normed.pointer + wanted * dim)
            wanted += rows.count
        }
        guard wanted > 0 else { return }
        let vocab = config.vocabularySize
        logits.withUnsafeMutableBufferPointer { out in
            CPUKernels.matmul(s.normed.pointer, xStride: dim, tokens: wanted, weights.output.pointer, inDim: dim,
                              outDim: vocab, out.baseAddress! + outputRow * vocab, yStride: vocab, parallel: parallel)
        }
        outputRow += wanted
    }

    /// All transformer blocks on the `n` rows of the chunk in the residual scratch.
    private func runLayers<Storage: KVStorage>(_ pieces: [ChunkPiece], rows n: Int, segments: [ForwardSegment<Storage>]) {
        let dim = config.dim, ffn = config.ffnDim
        let qDim = config.headCount * config.headDim, kvDim = config.kvHeadCount * config.headDim
        let qkvDim = qDim + 2 * kvDim
        let epsilon = Float(config.rmsNormEpsilon)
        let s = scratch

        for (l, layer) in weights.layers.enumerated() {
            // Attention block: x += Wo · attention(rope(Wq·xn), rope(Wk·xn), Wv·xn).
            CPUKernels.rmsNorm(s.residual.pointer, tokens: n, dim: dim, weight: layer.attentionNorm.pointer,
                               epsilon: epsilon, into: s.normed.pointer)
            // qkv: [n, qDim + 2 kvDim]
            linear(l, .qkv, s.normed.pointer, rows: n, pieces, layer.qkv, inDim: dim, outDim: qkvDim,
                   s.qkv.pointer, accumulate: false)
            if let bias = layer.qkvBias {
                // Qwen2: the biases are added before RoPE, as in its attention (q = Wq·x + bq, then rotate).
                for t in 0..<n { CPUKernels.add(bias.pointer, into: s.qkv.pointer + t * qkvDim, count: qkvDim) }
            }
            rope.apply(s.qkv.pointer, rowStride: qkvDim, tokens: n, heads: config.headCount,
                       cos: s.ropeCos.pointer, sin: s.ropeSin.pointer)
            rope.apply(s.qkv.pointer + qDim, rowStride: qkvDim, tokens: n, heads: config.kvHeadCount,
                       cos: s.ropeCos.pointer, sin: s.ropeSin.pointer)
            for piece in pieces {
                let first = s.qkv.pointer + piece.row * qkvDim
                hooks?.keysValues(layer: l, keys: first + qDim, values: first + qDim + kvDim, rowStride: qkvDim,
                                  tokens: piece.count, firstPosition: piece.position)
                let storage = segments[piece.segment].storage
                for t in 0..<piece.count {
                    let row = first + t * qkvDim
                    storage.keys(layer: l, position: piece.position + t).update(from: row + qDim, count: kvDim)
                    storage.values(layer: l, position: piece.position + t).update(from: row + qDim + kvDim, count: kvDim)
                }
            }
            attention(layer: l, rows: n, pieces, segments: segments)
            rowParallelLinear(l, .attentionOutput, s.attention.pointer, rows: n, pieces, layer.attentionOutput, inDim: qDim)

            // Feed-forward block: x += Wdown · (silu(Wgate·xn) * (Wup·xn)).
            CPUKernels.rmsNorm(s.residual.pointer, tokens: n, dim: dim, weight: layer.ffnNorm.pointer,
                               epsilon: epsilon, into: s.normed.pointer)
            // gateUp: [n, 2 ffn]
            linear(l, .gateUp, s.normed.pointer, rows: n, pieces, layer.gateUp, inDim: dim, outDim: 2 * ffn,
                   s.gateUp.pointer, accumulate: false)
            CPUKernels.swiGLU(s.gateUp.pointer, tokens: n, hidden: ffn, into: s.hidden.pointer)
            rowParallelLinear(l, .down, s.hidden.pointer, rows: n, pieces, layer.down, inDim: ffn)
        }
    }

    /// x += W·input for o and down. Under tensor parallelism the product is this rank's partial
    /// sum: it goes to the free `normed` scratch, is summed over the ranks, then added.
    private func rowParallelLinear(
        _ layer: Int, _ slot: LinearSlot, _ x: UnsafePointer<Float>, rows n: Int, _ pieces: [ChunkPiece], _ w: FloatBuffer, inDim: Int
    ) {
        let dim = config.dim, s = scratch
        guard let partialSums else {
            return linear(layer, slot, x, rows: n, pieces, w, inDim: inDim, outDim: dim, s.residual.pointer, accumulate: true)
        }
        linear(layer, slot, x, rows: n, pieces, w, inDim: inDim, outDim: dim, s.normed.pointer, accumulate: false)
        partialSums.sumOverRanks(s.normed.pointer, count: n * dim)
        CPUKernels.add(s.normed.pointer, into: s.residual.pointer, count: n * dim)
    }

    /// One linear of a layer over the chunk's rows: the hooks' if they take it (asked once per piece,
    /// so that they see one sequence at consecutive positions), else the fp32 weights, for all rows at
    /// once when there are no hooks. x: [rows, inDim], w: [outDim, inDim], y: [rows, outDim].
    private func linear(
        _ layer: Int, _ slot: LinearSlot, _ x: UnsafePointer<Float>, rows n: Int, _ pieces: [ChunkPiece], _ w: FloatBuffer,
        inDim: Int, outDim: Int, _ y: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        guard let hooks else {
            CPUKernels.matmul(x, xStride: inDim, tokens: n, w.pointer, inDim: inDim, outDim: outDim, y, yStride: outDim,
                              accumulate: accumulate, parallel: parallel)
            return
        }
        for piece in pieces {
            let xPiece = x + piece.row * inDim, yPiece = y + piece.row * outDim
            if !hooks.linear(layer: layer, slot: slot, x: xPiece, tokens: piece.count, inDim: inDim, outDim: outDim,
                             firstPosition: piece.position, y: yPiece, accumulate: accumulate) {
                CPUKernels.matmul(xPiece, xStride: inDim, tokens: piece.count, w.pointer, inDim: inDim, outDim: outDim,
                                  yPiece, yStride: outDim, accumulate: accumulate, parallel: parallel)
            }
        }
    }

    /// The fp32 weights of linear `slot` of `layer` ([outDim, inDim]).
    func weightBuffer(layer: Int, slot: LinearSlot) -> FloatBuffer {
        let w = weights.layers[layer]
        switch slot {
        case .qkv: return w.qkv
        case .attentionOutput: return w.attentionOutput
        case .gateUp: return w.gateUp
        case .down: return w.down
        }
    }

    var parallelLoop: ParallelLoop { parallel }

    /// Causal grouped-query attention of the chunk's queries over their sequences' KV storage (which
    /// already holds the chunk's own keys and values): a row at position p attends to positions 0...p
    /// of its own sequence. Tasks are (head, block of rows) pairs, each with its own row of scores.
    private func attention<Storage: KVStorage>(layer: Int, rows n: Int, _ pieces: [ChunkPiece], segments: [ForwardSegment<Storage>]) {
        let heads = config.headCount, headDim = config.headDim
        let group = heads / config.kvHeadCount
        let qDim = heads * headDim, qkvDim = qDim + 2 * config.kvHeadCount * headDim
        let scale = 1 / Float(headDim).squareRoot()
        let wantedBlocks = min(n, max(1, parallel.chunks(for: n * heads) / heads))
        let tokensPerBlock = (n + wantedBlocks - 1) / wantedBlocks
        // Recounted from the rounded-up block size, so that no block starts past the last row
        // (37 rows in 12 blocks of 4 would leave blocks 10 and 11 empty).
        let tokenBlocks = (n + tokensPerBlock - 1) / tokensPerBlock
        // Score rows a little longer than needed, so that a sequence growing one token at a time
        // reallocates them rarely.
        let longest = pieces.reduce(0) { max($0, $1.position + $1.count) }
        let rowLength = (longest + 255) / 256 * 256
        let scores = scratch.scores(tasks: heads * tokenBlocks, rowLength: rowLength)
        let qkv = scratch.qkv.pointer, out = scratch.attention.pointer, rowPiece = scratch.rowPiece

        parallel.run(heads * tokenBlocks) { task in
            let h = task % heads, block = task / heads
            let kvOffset = (h / group) * headDim
            let s = scores + task * rowLength
            for t in (block * tokensPerBlock)..<min(n, (block + 1) * tokensPerBlock) {
                let piece = pieces[Int(rowPiece[t])]
                let storage = segments[piece.segment].storage
                let q = qkv + t * qkvDim + h * headDim
                let length = piece.position + (t - piece.row) + 1
                for j in 0..<length {
                    s[j] = CPUKernels.dot(q, storage.keys(layer: layer, position: j) + kvOffset, count: headDim) * scale
                }
                CPUKernels.softmax(s, count: length)
                // out[t, h]: [headDim] = Σ_j s[j] * v[j]
                let o = out + t * qDim + h * headDim
                o.update(repeating: 0, count: headDim)
                for j in 0..<length {
                    CPUKernels.addScaled(storage.values(layer: layer, position: j) + kvOffset, s[j], into: o, count: headDim)
                }
            }
        }
    }
}
