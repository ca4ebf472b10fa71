import Engine
import Model
import Synchronization

/// A `GenerationEngine` for the server's tests: deterministic tokens (the bytes of `script`, one
/// per token, from its start), configurable delays, the seam's refusals (prompt too long,
/// overloaded, stopped), and a record of what it was asked and what was cancelled. KV blocks for
/// prompt plus `maxTokens` are held from `generate` until the stream ends, however it ends.
final class FakeEngine: GenerationEngine {
    struct Behavior: Sendable {
        var script = "Hello from the fake engine. The quick brown fox jumps over the lazy dog. "
        var firstTokenDelay: Duration = .zero
        var tokenDelay: Duration = .zero
        var tokensPerEvent = 1
        /// More running requests than this are refused with `overloaded`.
        var maxRunning = 100_000
        /// After this many tokens the runner "fails" (`EngineError.runnerFailed`).
        var failAfterTokens: Int?
        /// After this many tokens the model "emits" end-of-text (ends with `.stop` unless the request
        /// ignores end-of-text).
        var endOfTextAfter: Int?
        var blockSize = 16
        var kvBlocksTotal = 1 << 16
        /// After this many tokens every request waits until `release()` (tests that must catch a
        /// generation in flight, whatever the machine's load).
        var holdAfterTokens: Int?
    }

    let modelName = "fake-model"
    let tokenizer: any Tokenizer = FakeTokenizer()
    let chatTemplate = ChatTemplate.chatML(defaultSystemPrompt: nil)
    let contextLength: Int
    let behavior: Behavior

    private struct State {
        var blocksByRequest: [String: Int] = [:]
        var continuations: [String: AsyncThrowingStream<GenerationEvent, any Error>.Continuation] = [:]
        var requests: [GenerationRequest] = []
        var cancelled: [String] = []
        var shutdownCalls = 0
        var stopped = false
        var released = false
        var held: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    init(contextLength: Int = 256, behavior: Behavior = Behavior()) {
        self.contextLength = contextLength
        self.behavior = behavior
    }

    // MARK: What tests read

    /// Every request `generate` accepted, in order.
    var requests: [GenerationRequest] { state.withLock { $0.requests } }
    /// Ids of requests whose streams were cancelled (consumer gone) before they finished.
    var cancelledIDs: [String] { state.withLock { $0.cancelled } }
    var blocksInUse: Int { state.withLock { $0.blocksByRequest.values.reduce(0, +) } }
    var shutdownCalls: Int { state.withLock { $0.shutdownCalls } }

    /// Lets requests held at `holdAfterTokens` go on (and any later ones pass).
    func release() {
        let held = state.withLock { state in
            state.released = true
            defer { state.held = [] }
            return state.held
        }
        for continuation in held { continuation.resume() }
    }

    /// Waits while the engine holds requests (see `release`).
    private func waitForRelease() async {
        await withCheckedContinuation { continuation in
            let go = state.withLock { state in
                if !state.released { state.held.append(continuation) }
                return state.released
            }
            if go { continuation.resume() }
        }
    }

    /// The text a request of `count` tokens generates (before any stop).
    func scriptPrefix(_ count: Int) -> String {
        let bytes = Array(behavior.script.utf8)
        return String(decoding: (0..<count).map { bytes[$0 % bytes.count] }, as: UTF8.self)
    }

    // MARK: GenerationEngine

    func generate(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, any Error> {
        guard !request.prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        guard request.prompt.count < contextLength else {
            throw EngineError.promptTooLong(tokens: request.prompt.count, contextLength: contextLength)
        }
        let blocks = (request.prompt.count + request.maxTokens + behavior.blockSize - 1) / behavior.blockSize
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: GenerationEvent.self)
        try state.withLock { state in
            if state.stopped { throw EngineError.stopped("shut down") }
            if state.blocksByRequest.count >= behavior.maxRunning {
                throw EngineError.overloaded(waiting: state.blocksByRequest.count)
            }
            state.blocksByRequest[request.id] = blocks
            state.continuations[request.id] = continuation
            state.requests.append(request)
        }
        let task = Task(executorPreference: serverTestExecutor) { await self.produce(request, continuation) }
        continuation.onTermination = { [weak self] termination in
            task.cancel()
            self?.state.withLock { state in
                if case .cancelled = termination { state.cancelled.append(request.id) }
                state.blocksByRequest[request.id] = nil
                state.continuations[request.id] = nil
            }
        }
        return stream
    }

    var statistics: EngineStatistics {
        state.withLock { state in
            EngineStatistics(
                runningRequests: state.blocksByRequest.count, waitingRequests: 0,
                kvBlocksInUse: state.blocksByRequest.values.reduce(0, +), kvBlocksTotal: behavior.kvBlocksTotal,
                lastBatchSize: state.blocksByRequest.count)
        }
    }

    func shutdown() async {
        let running = state.withLock { state in
            state.stopped = true
            state.shutdownCalls += 1
            return Array(state.continuations.values)
        }
        for continuation in running { continuation.finish(throwing: EngineError.stopped("shut down")) }
        release()  // held producers wake up to streams that have ended
    }

    // MARK: Generation

    private func produce(_ request: GenerationRequest, _ continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation) async {
        let script = Array(behavior.script.utf8)
        let limit = min(request.maxTokens, contextLength - request.prompt.count)
        func finish(_ reason: FinishReason, _ generated: Int) {
            continuation.yield(.finished(reason, Usage(promptTokens: request.prompt.count, completionTokens: generated)))
            continuation.finish()
        }
        do {
            try await Task.sleep(for: behavior.firstTokenDelay)
            var generated = 0
            while generated < limit {
                var tokens: [GeneratedToken] = []
                while tokens.count < behavior.tokensPerEvent && generated < limit {
                    if let failure = behavior.failAfterTokens, generated >= failure {
                        if !tokens.isEmpty { continuation.yield(.tokens(tokens)) }
                        continuation.finish(throwing: EngineError.runnerFailed("injected failure after \(failure) tokens"))
                        return
                    }
                    let rest = script[(generated % script.count)...]
                    let endOfText = behavior.endOfTextAfter == generated && !request.ignoreEndOfText
                    if endOfText || request.stopStrings.contains(where: { rest.starts(with: $0.utf8) }) {
                        if !tokens.isEmpty { continuation.yield(.tokens(tokens)) }
                        finish(.stop, generated)
                        return
                    }
                    tokens.append(token(script[generated % script.count], request))
                    generated += 1
                }
                continuation.yield(.tokens(tokens))
                if generated == behavior.holdAfterTokens { await waitForRelease() }
                if generated < limit { try await Task.sleep(for: behavior.tokenDelay) }
            }
            finish(.length, generated)
        } catch {
            // Cancelled: onTermination has run (or will); nothing more to send.
        }
    }

    /// The token of `byte`, with log-probabilities when asked: the chosen token at -0.25, then
    /// the next ids, each one nat less likely.
    private func token(_ byte: UInt8, _ request: GenerationRequest) -> GeneratedToken {
        let id = FakeTokenizer.id(of: byte)
        let text = String(decoding: [byte], as: UTF8.self)
        guard let count = request.topLogprobs else { return GeneratedToken(token: id, text: text) }
        let chosen = TokenLogprob(token: id, text: text, logprob: -0.25)
        let alternatives = (0..<count).map { i in
            TokenLogprob(token: id + Int32(i), text: tokenizer.decode([id + Int32(i)]), logprob: -0.25 - Float(i))
        }
        return GeneratedToken(token: id, text: text, logprob: chosen, topLogprobs: alternatives)
    }
}
