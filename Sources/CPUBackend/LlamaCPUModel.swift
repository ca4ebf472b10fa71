import Glibc
import Model

/// Which positions of a forward call get logits.
public enum LogitsSelection: Sendable {
    /// The last token only (generation): `vocab` logits.
    case last
    /// Every token (perplexity): `tokens * vocab` logits, row t for token t.
    case all
}

/// A llama-architecture model (Llama 2/3, SmolLM2, TinyLlama, Mistral, Qwen2) run on the CPU in fp32.
///
/// One `forward` call runs a batch of tokens of one sequence at explicit positions against a `KVCache`
/// the caller owns: a whole prompt (prefill) or one token (decode) alike. Batches longer than
/// `maxBatchTokens` run in chunks. Activations live in preallocated scratch, so a call allocates
/// nothing (apart from growing `logits` the first time it is too small); that scratch also makes the
/// model serve one forward call at a time.
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
        for id in tokens where id < 0 || Int(id) >= config.vocabularySize {
            throw CPUBackendError.tokenOutOfRange(id: id, vocabularySize: config.vocabularySize)
        }

        let vocab = config.vocabularySize
        let logitRows = selection == .all ? count : 1
        if logits.count != logitRows * vocab { logits = [Float](repeating: 0, count: logitRows * vocab) }

        var start = 0
        var index = tokens.startIndex
        while start < count {
            let chunk = min(maxBatchTokens, count - start)
            // x: [chunk, dim] = the embeddings of the chunk's tokens.
            let x = scratch.residual.pointer
            for t in 0..<chunk {
                let row = weights.tokenEmbedding.pointer + Int(tokens[index]) * config.dim
                (x + t * config.dim).update(from: row, count: config.dim)
                index = tokens.index(after: index)
            }
            runLayers(tokens: chunk, position: position + start, cache: cache)

            let isLast = start + chunk == count
            if selection == .all {
                logits.withUnsafeMutableBufferPointer { out in
                    head(rows: 0..<chunk, into: out.baseAddress! + start * vocab)
                }
            } else if isLast {
                logits.withUnsafeMutableBufferPointer { out in head(rows: (chunk - 1)..<chunk, into: out.baseAddress!) }
            }
            start += chunk
        }
        cache.count = position + count
    }

    /// All transformer blocks on the chunk in the residual scratch (`tokens` rows at `position`...).
    private func runLayers(tokens n: Int, position: Int, cache: KVCache) {
        let dim = config.dim, ffn = config.ffnDim
        let qDim = config.headCount * config.headDim, kvDim = config.kvHeadCount * config.headDim
        let qkvDim = qDim + 2 * kvDim
        let epsilon = Float(config.rmsNormEpsilon)
        let s = scratch
        rope.fillTables(firstPosition: position, tokens: n, cos: s.ropeCos.pointer, sin: s.ropeSin.pointer)

        for (l, layer) in weights.layers.enumerated() {
            // Attention block: x += Wo · attention(rope(Wq·xn), rope(Wk·xn), Wv·xn).
            CPUKernels.rmsNorm(s.residual.pointer, tokens: n, dim: dim, weight: layer.attentionNorm.pointer,
                               epsilon: epsilon, into: s.normed.pointer)
            // qkv: [n, qDim + 2 kvDim]
            linear(l, .qkv, s.normed.pointer, tokens: n, position: position, layer.qkv, inDim: dim, outDim: qkvDim,
                   s.qkv.pointer, accumulate: false)
            if let bias = layer.qkvBias {
                // Qwen2: the biases are added before RoPE, as in its attention (q = Wq·x + bq, then rotate).
                for t in 0..<n { CPUKernels.add(bias.pointer, into: s.qkv.pointer + t * qkvDim, count: qkvDim) }
            }
            rope.apply(s.qkv.pointer, rowStride: qkvDim, tokens: n, heads: config.headCount,
                       cos: s.ropeCos.pointer, sin: s.ropeSin.pointer)
            rope.apply(s.qkv.pointer + qDim, rowStride: qkvDim, tokens: n, heads: config.kvHeadCount,
                       cos: s.ropeCos.pointer, sin: s.ropeSin.pointer)
            hooks?.keysValues(layer: l, keys: s.qkv.pointer + qDim, values: s.qkv.pointer + qDim + kvDim,
                              rowStride: qkvDim, tokens: n)
            for t in 0..<n {
                let row = s.qkv.pointer + t * qkvDim
                cache.keys(layer: l, position: position + t).update(from: row + qDim, count: kvDim)
                cache.values(layer: l, position: position + t).update(from: row + qDim + kvDim, count: kvDim)
            }
            attention(layer: l, tokens: n, position: position, cache: cache)
            linear(l, .attentionOutput, s.attention.pointer, tokens: n, position: position, layer.attentionOutput,
                   inDim: qDim, outDim: dim, s.residual.pointer, accumulate: true)

            // Feed-forward block: x += Wdown · (silu(Wgate·xn) * (Wup·xn)).
            CPUKernels.rmsNorm(s.residual.pointer, tokens: n, dim: dim, weight: layer.ffnNorm.pointer,
                               epsilon: epsilon, into: s.normed.pointer)
            // gateUp: [n, 2 ffn]
            linear(l, .gateUp, s.normed.pointer, tokens: n, position: position, layer.gateUp, inDim: dim, outDim: 2 * ffn,
                   s.gateUp.pointer, accumulate: false)
            CPUKernels.swiGLU(s.gateUp.pointer, tokens: n, hidden: ffn, into: s.hidden.pointer)
            linear(l, .down, s.hidden.pointer, tokens: n, position: position, layer.down, inDim: ffn, outDim: dim,
                   s.residual.pointer, accumulate: true)
        }
    }

    /// One linear of a layer: the hooks' if they take it, else the fp32 weights.
    /// x: [tokens, inDim], w: [outDim, inDim], y: [tokens, outDim].
    private func linear(
        _ layer: Int, _ slot: LinearSlot, _ x: UnsafePointer<Float>, tokens n: Int, position: Int, _ w: FloatBuffer,
        inDim: Int, outDim: Int, _ y: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        if let hooks, hooks.linear(layer: layer, slot: slot, x: x, tokens: n, inDim: inDim, outDim: outDim,
                                   firstPosition: position, y: y, accumulate: accumulate) {
            return
        }
        CPUKernels.matmul(x, xStride: inDim, tokens: n, w.pointer, inDim: inDim, outDim: outDim, y, yStride: outDim,
                          accumulate: accumulate, parallel: parallel)
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

    /// Causal grouped-query attention of the chunk's queries over the cache (which already holds the
    /// chunk's own keys and values): token t at position p attends to positions 0...p.
    /// Tasks are (head, block of tokens) pairs, each with its own row of scores.
    private func attention(layer: Int, tokens n: Int, position: Int, cache: KVCache) {
        let heads = config.headCount, headDim = config.headDim
        let group = heads / config.kvHeadCount
        let qDim = heads * headDim, qkvDim = qDim + 2 * config.kvHeadCount * headDim
        let scale = 1 / Float(headDim).squareRoot()
        let wantedBlocks = min(n, max(1, parallel.chunks(for: n * heads) / heads))
        let tokensPerBlock = (n + wantedBlocks - 1) / wantedBlocks
        // Recounted from the rounded-up block size, so that no block starts past the last token
        // (37 tokens in 12 blocks of 4 would leave blocks 10 and 11 empty).
        let tokenBlocks = (n + tokensPerBlock - 1) / tokensPerBlock
        let rowLength = cache.capacity
        let scores = scratch.scores(tasks: heads * tokenBlocks, rowLength: rowLength)
        let qkv = scratch.qkv.pointer, out = scratch.attention.pointer

        parallel.run(heads * tokenBlocks) { task in
            let h = task % heads, block = task / heads
            let kvOffset = (h / group) * headDim
            let s = scores + task * rowLength
            for t in (block * tokensPerBlock)..<min(n, (block + 1) * tokensPerBlock) {
                let q = qkv + t * qkvDim + h * headDim
                let length = position + t + 1
                for j in 0..<length {
                    s[j] = CPUKernels.dot(q, cache.keys(layer: layer, position: j) + kvOffset, count: headDim) * scale
                }
                CPUKernels.softmax(s, count: length)
                // out[t, h]: [headDim] = Σ_j s[j] * v[j]
                let o = out + t * qDim + h * headDim
                o.update(repeating: 0, count: headDim)
                for j in 0..<length {
                    CPUKernels.addScaled(cache.values(layer: layer, position: j) + kvOffset, s[j], into: o, count: headDim)
                }
            }
        }
    }

    /// Final norm and LM head for residual rows `rows`: logits [rows.count, vocab] into `out`.
    private func head(rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let dim = config.dim
        let first = scratch.residual.pointer + rows.lowerBound * dim
        let normed = scratch.normed.pointer
        CPUKernels.rmsNorm(first, tokens: rows.count, dim: dim, weight: weights.outputNorm.pointer,
                           epsilon: Float(config.rmsNormEpsilon), into: normed)
        CPUKernels.matmul(normed, xStride: dim, tokens: rows.count, weights.output.pointer, inDim: dim,
                          outDim: config.vocabularySize, out, yStride: config.vocabularySize, parallel: parallel)
    }
}
