/// One rank's share of a model under Megatron-style tensor parallelism.
///
/// Each rank keeps `1/count` of the attention heads (query and KV heads alike) and of the
/// feed-forward hidden channels, and all of the residual stream:
///
///     qkv, gate_up   column-parallel: the rank's output rows (its heads, its ffn channels)
///     o, down        row-parallel: the rank's input channels; the ranks' partial outputs are
///                    summed (one all-reduce after each) before the residual add
///     embeddings, norms, LM head   replicated
///
/// A rank's share is therefore itself a llama model, of config `sharded(config)` (fewer heads,
/// a narrower ffn), whose o and down outputs are partial sums: every backend runs a shard with
/// its ordinary forward pass plus the all-reduce (`ShardedWeightSource` gives the float weights).
public struct TensorParallelShard: Sendable, Hashable, CustomStringConvertible {
    public let rank: Int
    public let count: Int

    public init(rank: Int, of count: Int) throws {
        guard count >= 1, (0..<count).contains(rank) else {
            throw ModelError.invalidConfig("tensor-parallel rank \(rank) of \(count)")
        }
        self.rank = rank
        self.count = count
    }

    /// The whole model (tensor parallelism 1).
    public static let whole = try! TensorParallelShard(rank: 0, of: 1)

    public var description: String { "rank \(rank) of \(count)" }

    /// The config of this rank's share; throws unless the heads, KV heads and ffn channels split
    /// evenly (a KV head is never split or replicated across ranks).
    public func sharded(_ config: ModelConfig) throws -> ModelConfig {
        guard count > 1 else { return config }
        try Self.check(config, ranks: count)
        var local = config
        local.headCount /= count
        local.kvHeadCount /= count
        local.ffnDim /= count
        return local
    }

    /// Throws a clear error unless `config` splits evenly over `ranks` ranks.
    public static func check(_ config: ModelConfig, ranks: Int) throws {
        guard ranks >= 1 else { throw ModelError.invalidConfig("tensor parallelism \(ranks) (must be at least 1)") }
        guard config.kvHeadCount % ranks == 0, config.headCount % ranks == 0 else {
            throw ModelError.invalidConfig(
                "tensor parallelism \(ranks) does not divide the model's \(config.kvHeadCount) KV heads (\(config.headCount) query heads)")
        }
        guard config.ffnDim % ranks == 0 else {
            throw ModelError.invalidConfig("tensor parallelism \(ranks) does not divide the feed-forward width \(config.ffnDim)")
        }
    }

    /// This rank's part of `0..<total` split in `count` equal parts.
    public func part(of total: Int) -> Range<Int> {
        let size = total / count
        return (rank * size)..<((rank + 1) * size)
    }

    /// The rows (outputs) of the fused qkv projection this rank keeps: its query heads, then its
    /// key heads, then its value heads.
    public func qkvRows(_ config: ModelConfig) -> [Range<Int>] {
        let qDim = config.headCount * config.headDim, kvDim = config.kvHeadCount * config.headDim
        return [part(of: qDim), part(of: kvDim).shifted(by: qDim), part(of: kvDim).shifted(by: qDim + kvDim)]
    }

    /// The rows of the fused gate/up projection this rank keeps: its gate channels, then its up channels.
    public func gateUpRows(_ config: ModelConfig) -> [Range<Int>] {
        [part(of: config.ffnDim), part(of: config.ffnDim).shifted(by: config.ffnDim)]
    }
}

extension Range<Int> {
    func shifted(by offset: Int) -> Range<Int> { (lowerBound + offset)..<(upperBound + offset) }
}

/// A rank's share of a float model, read through from the whole model's `base`: its config is
/// `shard.sharded(base.config)`, and each tensor is the rank's cut of the base tensor (rows of
/// q/k/v/gate/up and of the q/k/v biases, columns of o and down; everything else whole).
public struct ShardedWeightSource: LlamaWeightSource {
    public let base: any LlamaWeightSource
    public let shard: TensorParallelShard
    public let config: ModelConfig

    public init(_ base: any LlamaWeightSource, shard: TensorParallelShard) throws {
        self.base = base
        self.shard = shard
        config = try shard.sharded(base.config)
    }

    public func name(of tensor: LlamaTensor) -> String { base.name(of: tensor) }

    public func ropeFrequencyFactors() throws -> [Float]? { try base.ropeFrequencyFactors() }

    /// How the tensor is cut: rows kept of a [rows, columns] tensor, or columns kept.
    private enum Cut { case whole, rows(Range<Int>), columns(Range<Int>) }

    private func cut(_ tensor: LlamaTensor) -> Cut {
        guard shard.count > 1, case let .layer(_, part) = tensor else { return .whole }
        let c = base.config
        let qDim = c.headCount * c.headDim, kvDim = c.kvHeadCount * c.headDim
        switch part {
        case .query, .queryBias: return .rows(shard.part(of: qDim))
        case .key, .value, .keyBias, .valueBias: return .rows(shard.part(of: kvDim))
        case .ffnGate, .ffnUp: return .rows(shard.part(of: c.ffnDim))
        case .attentionOutput: return .columns(shard.part(of: qDim))
        case .ffnDown: return .columns(shard.part(of: c.ffnDim))
        case .attentionNorm, .ffnNorm: return .whole
        }
    }

    public func shape(of tensor: LlamaTensor) -> [Int]? {
        guard var shape = base.shape(of: tensor) else { return nil }
        switch cut(tensor) {
        case .whole: break
        case let .rows(rows): shape[0] = rows.count
        case let .columns(columns) where shape.count == 2: shape[1] = columns.count
        case .columns: return nil
        }
        return shape
    }

    public func read(_ tensor: LlamaTensor, into output: UnsafeMutableBufferPointer<Float>) throws {
        let cut = cut(tensor)
        if case .whole = cut { return try base.read(tensor, into: output) }
        guard let full = base.shape(of: tensor) else { throw ModelError.missingTensor(name(of: tensor)) }
        let columns = full.count == 2 ? full[1] : 1
        var whole = [Float](repeating: 0, count: full.reduce(1, *))
        try whole.withUnsafeMutableBufferPointer { try base.read(tensor, into: $0) }
        guard output.count == (shape(of: tensor) ?? []).reduce(1, *) else {
            throw ModelError.invalidConfig("\(name(of: tensor)): \(output.count) elements asked of a shard of \(full)")
        }
        switch cut {
        case .whole: break
        case let .rows(rows):
            _ = output.update(fromContentsOf: whole[(rows.lowerBound * columns)..<(rows.upperBound * columns)])
        case let .columns(kept):
            for r in 0..<full[0] {
                let from = whole[(r * columns + kept.lowerBound)..<(r * columns + kept.upperBound)]
                _ = UnsafeMutableBufferPointer(rebasing: output[(r * kept.count)..<((r + 1) * kept.count)]).update(fromContentsOf: from)
            }
        }
    }
}
