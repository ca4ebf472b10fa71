import Engine
import Model

/// The engine's `ModelRunner` on the CPU: a `LlamaCPUModel` over a `PagedKVStore`. A step is one
/// batched forward call, so its sequences share every pass over the weights (what decode on the CPU is
/// bound by). The model's hooks apply, so an FMPQ checkpoint (`QuantizedModelHooks`) serves on the CPU
/// too.
///
///     let runner = try CPUModelRunner(model: model, kvBlockCount: CPUModelRunner.blocks(forTokens: 8192))
///     let engine = try LLMEngine(runner: runner, tokenizer: tokenizer, chatTemplate: template, configuration: ...)
public final class CPUModelRunner: ModelRunner {
    public let model: LlamaCPUModel
    public let kv: PagedKVStore
    public let maxStepTokens: Int
    public let maxStepSequences: Int

    public var config: ModelConfig { model.config }
    public var kvBlockSize: Int { kv.blockSize }
    public var kvBlockCount: Int { kv.blockCount }

    /// - Parameters:
    ///   - kvBlockSize: positions per block (a power of two).
    ///   - kvBlockCount: blocks in the cache (each `kv.bytesPerBlock` bytes).
    ///   - maxStepTokens: the most tokens of one step (default: the model's chunk size, so that a step
    ///     is one pass over the weights).
    ///   - maxStepSequences: the most sequences of one step.
    public init(
        model: LlamaCPUModel, kvBlockSize: Int = 16, kvBlockCount: Int, maxStepTokens: Int? = nil, maxStepSequences: Int = 64
    ) throws {
        let maxStepTokens = maxStepTokens ?? model.maxBatchTokens
        guard maxStepTokens > 0, maxStepSequences > 0 else {
            throw CPUBackendError.unsupported("steps of \(maxStepTokens) tokens and \(maxStepSequences) sequences")
        }
        self.model = model
        kv = try PagedKVStore(config: model.config, blockSize: kvBlockSize, blockCount: kvBlockCount)
        self.maxStepTokens = maxStepTokens
        self.maxStepSequences = maxStepSequences
    }

    /// Blocks of `blockSize` positions that hold `tokens` positions.
    public static func blocks(forTokens tokens: Int, blockSize: Int = 16) -> Int {
        (tokens + blockSize - 1) / blockSize
    }

    public func execute(_ step: [StepSequence], logits: inout [Float]) throws {
        guard !step.isEmpty else {
            logits.removeAll()
            return
        }
        guard step.count <= maxStepSequences else {
            throw CPUBackendError.unsupported("a step of \(step.count) sequences (this runner takes \(maxStepSequences))")
        }
        let tokens = step.reduce(0) { $0 + $1.tokens.count }
        guard tokens <= maxStepTokens else {
            throw CPUBackendError.unsupported("a step of \(tokens) tokens (this runner takes \(maxStepTokens))")
        }
        for sequence in step where sequence.firstPosition + sequence.tokens.count > config.contextLength {
            throw CPUBackendError.contextFull(needed: sequence.firstPosition + sequence.tokens.count, capacity: config.contextLength)
        }
        let sequences = step.map {
            PagedForwardSequence(tokens: $0.tokens[...], firstPosition: $0.firstPosition, blockTable: $0.blockTable,
                                 logits: $0.needsLogits ? .last : .skip)
        }
        try model.forward(sequences, kv: kv, logits: &logits)
    }
}
