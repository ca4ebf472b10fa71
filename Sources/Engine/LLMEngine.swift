import Model
import Sampling

/// The serving engine: continuous batching over a `ModelRunner` (CPU or CUDA), with a paged KV cache,
/// chunked prefill, prefix caching and preemption by recomputation.
///
/// Callers submit requests from any thread or task; one dedicated engine thread (not one of Swift
/// concurrency's cooperative threads: a step is long blocking work) loops schedule -> execute ->
/// sample -> update and yields each request's events on its stream. The thread sleeps when there is
/// nothing to run. Sendable: its own state is immutable; what callers and the thread share sits
/// behind one lock (`EngineMailbox`).
///
///     let engine = try LLMEngine(runner: runner, tokenizer: tokenizer, chatTemplate: template,
///                                configuration: EngineConfiguration(modelName: "smollm2"))
///     for try await event in try engine.generate(GenerationRequest(id: "1", prompt: ids, maxTokens: 64)) {
///         if case let .tokens(tokens) = event { print(tokens.map(\.text).joined(), terminator: "") }
///     }
///     await engine.shutdown()
public final class LLMEngine: GenerationEngine {
    public let modelName: String
    public let tokenizer: any Tokenizer
    public let chatTemplate: ChatTemplate
    public let contextLength: Int
    /// The tokens that end generation when a request names none.
    public let endOfTextTokens: Set<Int32>
    private let vocabularySize: Int
    private let blockSize: Int
    private let blockCount: Int
    private let maxWaitingRequests: Int
    private let maxTopLogprobs: Int
    private let mailbox: EngineMailbox

    /// Starts the engine thread. The engine owns `runner` from now on: nothing else may call it.
    public init(
        runner: any ModelRunner, tokenizer: any Tokenizer, chatTemplate: ChatTemplate, configuration: EngineConfiguration
    ) throws {
        func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw EngineConfigurationError(message()) }
        }
        let maxBatch = configuration.maxBatchSize ?? runner.maxStepSequences
        let maxStepTokens = configuration.maxStepTokens ?? runner.maxStepTokens
        let contextLength = configuration.contextLength ?? runner.config.contextLength
        try check(runner.kvBlockSize > 0 && runner.kvBlockCount > 0,
                  "the runner's KV cache is empty (\(runner.kvBlockCount) blocks of \(runner.kvBlockSize))")
        try check(runner.maxStepSequences > 0 && runner.maxStepTokens > 0, "the runner's step limits are empty")
        try check((1...runner.maxStepSequences).contains(maxBatch),
                  "the batch size must be between 1 and the runner's \(runner.maxStepSequences), not \(maxBatch)")
        try check((1...runner.maxStepTokens).contains(maxStepTokens),
                  "the tokens per step must be between 1 and the runner's \(runner.maxStepTokens), not \(maxStepTokens)")
        try check(contextLength >= 2 && contextLength <= runner.config.contextLength,
                  "the context length must be between 2 and the model's \(runner.config.contextLength), not \(contextLength)")
        try check(configuration.maxWaitingRequests >= 1, "the waiting queue must hold at least 1 request")
        try check(configuration.maxTopLogprobs >= 0, "the most top log-probabilities must be >= 0")

        modelName = configuration.modelName
        self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate
        self.contextLength = contextLength
        endOfTextTokens = configuration.endOfTextTokens
            ?? EngineConfiguration.endOfTextTokens(tokenizer: tokenizer, chatTemplate: chatTemplate)
        vocabularySize = runner.config.vocabularySize
        blockSize = runner.kvBlockSize
        blockCount = runner.kvBlockCount
        maxWaitingRequests = configuration.maxWaitingRequests
        maxTopLogprobs = configuration.maxTopLogprobs
        mailbox = EngineMailbox(statistics: EngineStatistics(kvBlocksTotal: runner.kvBlockCount))

        let scheduler = Scheduler(SchedulerConfiguration(
            maxStepTokens: maxStepTokens, maxStepSequences: maxBatch, blockSize: runner.kvBlockSize,
            blockCount: runner.kvBlockCount, prefixCaching: configuration.prefixCaching))
        let loop = EngineLoop(runner: runner, scheduler: scheduler, mailbox: mailbox, tokenizer: tokenizer,
                              contextLength: contextLength, endOfText: endOfTextTokens)
        // The loop (and with it the runner: GPU memory, CUDA objects) is released on the engine
        // thread *before* `shutdown()` hears that the engine exited, so that a process exiting right
        // after shutdown never races the runner's teardown (it did: CUDA frees during exit crashed).
        let owner = LoopOwner(loop)
        guard EngineThread.start({ [mailbox] in
            owner.loop?.run()
            owner.loop = nil
            mailbox.markExited()
        }) else {
            throw EngineConfigurationError("could not start the engine thread")
        }
    }

    deinit {
        // Without `shutdown()`, the thread still ends (and releases the runner) once it sees this.
        mailbox.requestShutdown(reason: "the engine was released")
    }

    public func generate(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, any Error> {
        try validate(request)
        let id = mailbox.makeID()
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: GenerationEvent.self, throwing: (any Error).self)
        let mailbox = self.mailbox
        continuation.onTermination = { termination in
            if case .cancelled = termination { mailbox.cancel(id) }
        }
        do {
            try mailbox.submit(SubmittedRequest(id: id, request: request, continuation: continuation), maxWaiting: maxWaitingRequests)
        } catch {
            continuation.finish()
            throw error
        }
        return stream
    }

    public var statistics: EngineStatistics { mailbox.statistics }

    /// Whether `shutdown()` was called (requests are refused from then on).
    var isShuttingDown: Bool { mailbox.isShuttingDown }

    public func shutdown() async {
        mailbox.requestShutdown(reason: "the engine was shut down")
        await mailbox.waitUntilExited()
    }

    /// Throws what makes `request` impossible to run, before it is queued.
    private func validate(_ request: GenerationRequest) throws {
        let prompt = request.prompt
        guard !prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw EngineError.invalidRequest("token id \(bad) is outside the model's vocabulary (0..<\(vocabularySize))")
        }
        guard request.maxTokens >= 1 else {
            throw EngineError.invalidRequest("maxTokens must be at least 1, not \(request.maxTokens)")
        }
        do {
            try request.sampling.validate()
        } catch {
            throw EngineError.invalidRequest("\(error)")
        }
        if let n = request.topLogprobs, !(0...maxTopLogprobs).contains(n) {
            throw EngineError.invalidRequest("topLogprobs must be between 0 and \(maxTopLogprobs), not \(n)")
        }
        if request.stopStrings.contains("") { throw EngineError.invalidRequest("a stop string is empty") }
        guard prompt.count < contextLength else {
            throw EngineError.promptTooLong(tokens: prompt.count, contextLength: contextLength)
        }
        // The most positions it can ever hold: every token but the last one generated runs.
        let longest = prompt.count + min(request.maxTokens, contextLength - prompt.count)
        guard longest - 1 <= blockCount * blockSize else {
            throw EngineError.exceedsCache(tokens: longest - 1, capacityTokens: blockCount * blockSize)
        }
    }
}

/// Holds the engine loop until its thread ends, so the thread can release it before reporting exit.
private final class LoopOwner: @unchecked Sendable {
    // @unchecked: set at init, then read and cleared by the engine thread only.
    var loop: EngineLoop?
    init(_ loop: EngineLoop) { self.loop = loop }
}
