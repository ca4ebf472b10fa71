import Model
import Sampling

// The seam between the engine and a backend (CPU or CUDA). The engine decides which tokens of
// which sequences run in a step and where their keys and values live (block tables into the
// runner's paged KV cache); the runner only executes the step.

/// One sequence's share of a step: `tokens` at positions `firstPosition ..< firstPosition + tokens.count`
/// (a prefill chunk, or one decode token). Its keys and values go to, and attention reads from, the
/// cache blocks of `blockTable`: position p lives in block `blockTable[p / blockSize]`, slot
/// `p % blockSize`. Positions before `firstPosition` are already in the cache (earlier steps or a
/// shared prefix).
public struct StepSequence: Sendable {
    public var tokens: [Int32]
    public var firstPosition: Int
    public var blockTable: [Int32]
    /// Whether the step should return logits for this sequence's last token (false for a prefill
    /// chunk that does not end the prompt).
    public var needsLogits: Bool
    public init(tokens: [Int32], firstPosition: Int, blockTable: [Int32], needsLogits: Bool) {
        self.tokens = tokens
        self.firstPosition = firstPosition
        self.blockTable = blockTable
        self.needsLogits = needsLogits
    }
}

/// Runs the model for the engine. Called from the engine's one thread, one step at a time.
public protocol ModelRunner: AnyObject {
    var config: ModelConfig { get }
    /// Tokens per KV block.
    var kvBlockSize: Int { get }
    /// Blocks in the runner's KV cache (ids 0 ..< kvBlockCount).
    var kvBlockCount: Int { get }
    /// The most tokens (all sequences together) one step may run.
    var maxStepTokens: Int { get }
    /// The most sequences one step may run.
    var maxStepSequences: Int { get }
    /// Runs one step. For every sequence with `needsLogits`, in order, writes the `vocabularySize`
    /// logits of its last token into `logits` (row i for the i-th such sequence), resizing it when
    /// its count differs.
    func execute(_ step: [StepSequence], logits: inout [Float]) throws
    /// See the extension's default.
    func executeGreedy(_ step: [StepSequence], tokens: inout [Int32]) throws
    /// Whether `executeSampled` samples where the logits are (the GPU runner); the default is false,
    /// and the engine then samples `execute`'s logits with each request's `Sampler`.
    var samplesOnDevice: Bool { get }
    /// See the extension's default.
    func executeSampled(_ step: [StepSequence], rows: [SamplingRow], tokens: inout [SampledToken]) throws
}

extension ModelRunner {
    /// Runs one step like `execute(_:logits:)` but returns only the most likely token of each row
    /// (greedy sampling without log-probabilities or penalties, ties to the smallest id). This
    /// default computes the logits; a runner that can pick the token where the logits are (the GPU)
    /// overrides it and skips copying them.
    public func executeGreedy(_ step: [StepSequence], tokens: inout [Int32]) throws {
        var logits: [Float] = []
        try execute(step, logits: &logits)
        let vocab = config.vocabularySize, rows = vocab > 0 ? logits.count / vocab : 0
        tokens = (0..<rows).map { Sampler.argmax(logits[($0 * vocab)..<(($0 + 1) * vocab)]) }
    }

    public var samplesOnDevice: Bool { false }

    /// Runs one step and draws row i's token with `rows[i]` (ThresholdSampling's procedure; the
    /// rows are the sequences with `needsLogits`, in order). This default computes the logits and
    /// samples them on the CPU; the GPU runner overrides it and samples on the GPU.
    public func executeSampled(_ step: [StepSequence], rows: [SamplingRow], tokens: inout [SampledToken]) throws {
        var logits: [Float] = []
        try execute(step, logits: &logits)
        let vocab = config.vocabularySize
        guard vocab > 0, logits.count == rows.count * vocab else {
            throw EngineError.runnerFailed("the runner returned \(logits.count) logits for \(rows.count) sampled rows of \(vocab)")
        }
        tokens = ThresholdSampling.sampleRows(logits, vocab: vocab, rows: rows)
    }
}
