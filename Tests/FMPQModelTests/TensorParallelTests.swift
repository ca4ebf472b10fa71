import CPUBackend
import Dispatch
import FMPQModel
import Foundation
import Model
import Quant
import Testing

/// Tensor parallelism's sharding math on the CPU backend: N simulated ranks (threads, each a
/// `LlamaCPUModel` on its shard, summing partials through a `HostRankGroup`) give the logits of
/// the whole model. Float models agree up to fp32 summation order; FMPQ models too, because a
/// checkpoint quantized for N ranks cuts into N valid layouts whose block scales are unchanged.
///
/// Tolerances, as the largest |difference| over the logits relative to the largest |logit|:
/// - float models: 1e-4. Only the order of fp32 sums changes (partials added rank by rank instead
///   of in one dot product), ~1e-6 relative per layer; 1e-4 leaves room for 30 layers and still
///   catches any wrong cut (a misplaced head or channel moves logits by O(1)).
/// - FMPQ models end to end: 0.15, the bound the GPU runner checks use against the CPU reference.
///   A residual value that the changed summation order moves across a rounding boundary of its
///   4-bit code flips that code (a step of absmax/7), and flips compound through the layers: on
///   the random model the difference was 1e-6 in most runs and 0.03 in one. The exact claim is
///   checked per linear instead (`rowParallelCutsSumToTheWholeLinear`): on the same input, the
///   ranks' partial outputs sum to the whole linear's within 1e-5, and column-parallel rows are
///   bit-identical.
@Suite(.serialized) struct TensorParallelTests {
    static let tolerance: Float = 1e-4
    static let quantizedTolerance: Float = 0.15

    /// Logits of every position of `prompt`, the model given as `ranks` shards run together.
    static func shardedLogits(_ shards: [LlamaCPUModel], prompt: [Int32]) throws -> [Float] {
        let group = HostRankGroup(ranks: shards.count)
        for (rank, model) in shards.enumerated() { model.partialSums = group.member(rank) }
        defer { for model in shards { model.partialSums = nil } }
        nonisolated(unsafe) var results = [Result<[Float], any Error>](repeating: .success([]), count: shards.count)
        nonisolated(unsafe) let models = shards
        // A thread per rank: the ranks meet at barriers, so all must run at once (a thread pool
        // sized to the 2-core CI machine would leave ranks queued behind a waiting one).
        let done = DispatchSemaphore(value: 0)
        for rank in shards.indices {
            Thread {
                results[rank] = Result {
                    var logits: [Float] = []
                    try models[rank].forward(prompt, at: 0, cache: models[rank].makeCache(capacity: prompt.count), logits: &logits, for: .all)
                    return logits
                }
                done.signal()
            }.start()
        }
        for _ in shards { done.wait() }
        let all = try results.map { try $0.get() }
        // The LM head is replicated: every rank has the same logits.
        for other in all.dropFirst() { #expect(other == all[0], "ranks disagree") }
        return all[0]
    }

    static func wholeLogits(_ model: LlamaCPUModel, prompt: [Int32]) throws -> [Float] {
        var logits: [Float] = []
        try model.forward(prompt, at: 0, cache: model.makeCache(capacity: prompt.count), logits: &logits, for: .all)
        return logits
    }

    static func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count && !a.isEmpty)
        let scale = a.reduce(0) { max($0, abs($1)) }
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) } / scale
    }

    /// A small random model whose heads, KV heads and ffn split 2 and 4 ways.
    static func randomModel() -> (RandomLlamaWeights, [Int32]) {
        var random = SystemRandomNumberGenerator()
        let config = ModelConfig(
            vocabularySize: 97, dim: 128, layerCount: 3, headCount: 8, kvHeadCount: 4, headDim: 64, ffnDim: 1024,
            ropeBase: 10000, contextLength: 64)
        let prompt = (0..<11).map { _ in Int32.random(in: 0..<97, using: &random) }
        return (RandomLlamaWeights(config: config, random: &random), prompt)
    }

    @Test(arguments: [2, 4]) func floatShardsGiveTheWholeModelsLogits(ranks: Int) throws {
        let (source, prompt) = Self.randomModel()
        let whole = try Self.wholeLogits(try LlamaCPUModel(weights: source, threads: 1), prompt: prompt)
        let shards = try (0..<ranks).map {
            try LlamaCPUModel(weights: ShardedWeightSource(source, shard: TensorParallelShard(rank: $0, of: ranks)), threads: 1)
        }
        #expect(shards[0].config.headCount == 8 / ranks && shards[0].config.kvHeadCount == 4 / ranks)
        #expect(shards[0].config.ffnDim == 1024 / ranks && shards[0].config.dim == 128)
        let sharded = try Self.shardedLogits(shards, prompt: prompt)
        let difference = Self.relativeDifference(whole, sharded)
        #expect(difference < Self.tolerance, "TP=\(ranks) vs TP=1: \(difference)")
        // A shard alone (no all-reduce) is not the model: the test can fail.
        let alone = try Self.wholeLogits(shards[0], prompt: prompt)
        #expect(Self.relativeDifference(whole, alone) > 0.01)
    }

    /// An FMPQ W4AxKV4 checkpoint quantized for 4 ranks runs whole, as 2 ranks and as 4, with the
    /// same logits: each rank's cut of every linear is a valid layout of its own.
    @Test func quantizedShardsGiveTheWholeQuantizedModelsLogits() throws {
        let (source, prompt) = Self.randomModel()
        let model = try LlamaCPUModel(weights: source, threads: 1)
        var random = SystemRandomNumberGenerator()
        let calibrationTokens = (0..<2).map { _ in (0..<16).map { _ in Int32.random(in: 0..<97, using: &random) } }
        let calibration = try Calibrator.calibrate(model: model, sequences: calibrationTokens, hessians: false)
        // Blocks of 64: o's 512 inputs make 8 blocks, two per rank at TP=4. Half INT8, so that
        // every rank has INT8 and INT4 blocks of its own.
        let recipe = FMPQRecipe(budget: .fractionOfBlocks(0.5), blockSize: 64, weightMethod: .rtn)
        let checkpoint = try ModelQuantizer.quantize(
            model: model, calibration: calibration, settings: QuantizeSettings(recipe: recipe, kv4: true, tensorParallel: 4),
            modelFile: "random", modelFileSHA256: nil, source: CalibrationSource(text: "random tokens"))
        let down = try checkpoint.linear(LinearSlot.down.name(layer: 0))
        #expect(down.permutation.layout.int8Blocks % 4 == 0 && down.permutation.layout.int8Blocks > 0)

        let evaluation = QuantizedEvaluation(checkpoint)
        try QuantizedModelHooks.install(on: model, checkpoint: checkpoint, evaluation: evaluation)
        let whole = try Self.wholeLogits(model, prompt: prompt)
        model.hooks = nil
        let float = try Self.wholeLogits(model, prompt: prompt)
        #expect(Self.relativeDifference(float, whole) > 1e-3, "the quantized model differs from the float one")

        for ranks in [2, 4] {
            let shards = try (0..<ranks).map { rank in
                let shard = try TensorParallelShard(rank: rank, of: ranks)
                let m = try LlamaCPUModel(weights: ShardedWeightSource(source, shard: shard), threads: 1)
                try QuantizedModelHooks.install(on: m, checkpoint: checkpoint.sharded(shard, config: source.config), evaluation: evaluation)
                return m
            }
            let difference = Self.relativeDifference(whole, try Self.shardedLogits(shards, prompt: prompt))
            #expect(difference < Self.quantizedTolerance, "quantized TP=\(ranks) vs TP=1: \(difference)")
            try Self.checkCuts(checkpoint, config: source.config, ranks: ranks)
        }
    }

    /// Every linear of layer 0 on a random input: column-parallel cuts give exactly the whole
    /// linear's rows; row-parallel cuts, fed the rank's channels, sum to the whole output (1e-5 of
    /// its largest |value|: fp32 summation order only, the activation codes are the same).
    static func checkCuts(_ checkpoint: QuantizedCheckpoint, config: ModelConfig, ranks: Int) throws {
        var random = SystemRandomNumberGenerator()
        let tokens = 5
        let cuts = try (0..<ranks).map { try checkpoint.sharded(TensorParallelShard(rank: $0, of: ranks), config: config) }
        for slot in LinearSlot.allCases {
            let name = slot.name(layer: 0)
            let (w, p) = try checkpoint.linear(name)
            let whole = try QuantizedLinear(weights: w, permutation: p)
            let k = w.layout.inputChannels
            let x = (0..<(tokens * k)).map { _ in Float.random(in: -2...2, using: &random) }
            let y = whole.apply(x, tokens: tokens)
            let parts = try cuts.map { cut -> QuantizedLinear in
                let (cw, cp) = try cut.linear(name)
                return try QuantizedLinear(weights: cw, permutation: cp)
            }
            if slot.isRowParallel {
                let width = k / ranks
                var sum = [Float](repeating: 0, count: y.count)
                for (rank, part) in parts.enumerated() {
                    var xr: [Float] = []
                    for t in 0..<tokens {
                        let first: Int = t * k + rank * width
                        xr += x[first..<(first + width)]
                    }
                    for (i, v) in part.apply(xr, tokens: tokens).enumerated() { sum[i] += v }
                }
                let difference = relativeDifference(y, sum)
                #expect(difference < 1e-5, "\(name) at TP=\(ranks): partial sums differ by \(difference)")
            } else {
                let shard0 = try TensorParallelShard(rank: 0, of: ranks)
                let rows = slot == .qkv ? shard0.qkvRows(config) : shard0.gateUpRows(config)
                let y0 = parts[0].apply(x, tokens: tokens), n = w.outputs, n0 = parts[0].outputs
                var expected: [Float] = []
                for t in 0..<tokens {
                    for r in rows {
                        let first: Int = t * n + r.lowerBound
                        expected += y[first..<(first + r.count)]
                    }
                }
                #expect(y0 == expected && n0 == rows.reduce(0) { $0 + $1.count }, "\(name) at TP=\(ranks): rank 0's rows differ")
            }
        }
    }

    /// The real model splits 3 ways (9 heads, 3 KV heads, ffn 1536): float and FMPQ (blocks of 64,
    /// so that o's 192 inputs per rank are whole blocks).
    @Test(.enabled(if: Assets.gguf != nil, Assets.missing)) func theRealModelSplitsThreeWays() throws {
        // A model of its own: other suites install hooks on the shared one while this runs.
        let file = try GGUFFile(path: Assets.gguf!)
        let source = try GGUFWeights(file: file)
        let whole = try LlamaCPUModel(weights: source, maxBatchTokens: 32)
        let tokenizer = try makeTokenizer(gguf: file)
        let prompt = Array(tokenizer.encode(Assets.text, addBOS: false, parseSpecial: false).prefix(8))
        let shards = try (0..<3).map {
            try LlamaCPUModel(weights: ShardedWeightSource(source, shard: TensorParallelShard(rank: $0, of: 3)), maxBatchTokens: 32)
        }
        let expected = try Self.wholeLogits(whole, prompt: prompt)
        let difference = Self.relativeDifference(expected, try Self.shardedLogits(shards, prompt: prompt))
        #expect(difference < Self.tolerance, "SmolLM2 float TP=3 vs TP=1: \(difference)")

        let calibration = try Calibrator.calibrate(model: whole, sequences: [Array(prompt.prefix(8))], hessians: false)
        // Unclipped A4 (see checkpointRoundTripOnTheRealModel): with an 8-token calibration the
        // clipped model is damaged enough that fp32 sum-order differences move its logits 0.27.
        let recipe = FMPQRecipe(blockSize: 64, weightMethod: .rtn, int4Clip: 1)
        let checkpoint = try ModelQuantizer.quantize(
            model: whole, calibration: calibration, settings: QuantizeSettings(recipe: recipe, kv4: true, tensorParallel: 3),
            modelFile: Assets.gguf!, modelFileSHA256: nil, source: CalibrationSource(text: "test text"))
        let evaluation = QuantizedEvaluation(checkpoint)
        try QuantizedModelHooks.install(on: whole, checkpoint: checkpoint, evaluation: evaluation)
        let quantized = try Self.wholeLogits(whole, prompt: prompt)
        whole.hooks = nil
        for (rank, shard) in shards.enumerated() {
            try QuantizedModelHooks.install(
                on: shard, checkpoint: checkpoint.sharded(TensorParallelShard(rank: rank, of: 3), config: source.config), evaluation: evaluation)
        }
        let quantizedDifference = Self.relativeDifference(quantized, try Self.shardedLogits(shards, prompt: prompt))
        #expect(quantizedDifference < Self.quantizedTolerance, "SmolLM2 FMPQ TP=3 vs TP=1: \(quantizedDifference)")
        try Self.checkCuts(checkpoint, config: source.config, ranks: 3)
    }

    /// What cannot be split is refused with a reason, before anything runs.
    @Test func unsplittableModelsAndCheckpointsAreRefused() throws {
        let (source, _) = Self.randomModel()
        #expect(throws: ModelError.self) { try ShardedWeightSource(source, shard: TensorParallelShard(rank: 0, of: 3)) }
        #expect(throws: ModelError.self) { try TensorParallelShard(rank: 2, of: 2) }
        do {
            _ = try ShardedWeightSource(source, shard: TensorParallelShard(rank: 0, of: 8))
            Issue.record("8 ranks of 4 KV heads were accepted")
        } catch { #expect("\(error)".contains("4 KV heads")) }

        // A checkpoint quantized for one GPU permutes o and down across what would be ranks.
        let model = try LlamaCPUModel(weights: source, threads: 1)
        var random = SystemRandomNumberGenerator()
        let tokens = (0..<16).map { _ in Int32.random(in: 0..<97, using: &random) }
        let calibration = try Calibrator.calibrate(model: model, sequences: [tokens], hessians: false)
        let recipe = FMPQRecipe(budget: .fractionOfBlocks(0.5), blockSize: 64, weightMethod: .rtn)
        let single = try ModelQuantizer.quantize(
            model: model, calibration: calibration, settings: QuantizeSettings(recipe: recipe, kv4: true),
            modelFile: "random", modelFileSHA256: nil, source: CalibrationSource(text: "random tokens"))
        do {
            _ = try single.sharded(TensorParallelShard(rank: 1, of: 2), config: source.config)
            Issue.record("a checkpoint quantized for one GPU was cut for two")
        } catch { #expect("\(error)".contains("--tensor-parallel 2"), "\(error)") }
    }
}

@Suite struct ShardedPermutationTests {
    /// One shard is the ordinary permutation; several keep each rank's channels in its own blocks,
    /// INT4 blocks of every rank first, then INT8 blocks, with equal INT8 counts.
    @Test func shardedPermutationsKeepChannelsOnTheirRank() throws {
        var random = SystemRandomNumberGenerator()
        let scores = (0..<512).map { _ in Float.random(in: 0..<1, using: &random) * (Bool.random(using: &random) ? 1 : 20) }
        let budget = INT8Budget.threshold(ratio: 4, maxFraction: 0.5)
        #expect(try FMPQPermutation(scores: scores, budget: budget, blockSize: 64, shards: 1)
            == FMPQPermutation(scores: scores, budget: budget, blockSize: 64))
        let p = try FMPQPermutation(scores: scores, budget: budget, blockSize: 64, shards: 2)
        #expect(p.layout.int8Blocks % 2 == 0 && p.layout.int8Blocks > 0)
        let int4PerRank = p.layout.int4Channels / 2, int8PerRank = p.layout.int8Channels / 2
        for (position, channel) in p.permutation.enumerated() {
            let rank = position < p.layout.int4Channels ? position / int4PerRank : (position - p.layout.int4Channels) / int8PerRank
            #expect(Int(channel) / 256 == rank, "position \(position) holds channel \(channel)")
        }
        // Each rank's INT8 channels are its highest-scoring ones.
        for rank in 0..<2 {
            let start = p.layout.int4Channels + rank * int8PerRank
            let int8 = Set(p.permutation[start..<(start + int8PerRank)].map(Int.init))
            let own = (rank * 256)..<((rank + 1) * 256)
            let best = Set(own.sorted { scores[$0] > scores[$1] }.prefix(int8PerRank))
            #expect(int8 == best)
        }
        #expect(throws: QuantError.self) { try FMPQPermutation(scores: scores, blockSize: 128, shards: 8) }
    }
}
