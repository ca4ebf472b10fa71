import Model
import Sampling

// The seam between the serving engine and its users (the server, the CLI, the benchmarks).
// The engine owns the model runner, the KV block manager and the scheduler; callers only submit
// requests and consume each request's event stream.

/// One generation request: a tokenized prompt and how to continue it.
public struct GenerationRequest: Sendable {
    /// Caller-chosen id, used in logs and errors.
    public var id: String
    /// The prompt's token ids (chat templates are applied by the caller). Must not be empty.
    public var prompt: [Int32]
    public var sampling: SamplingParameters
    /// The most tokens to generate (the context limit may end generation earlier).
    public var maxTokens: Int
    /// Generation stops before any of these strings; the stop string itself is not emitted.
    public var stopStrings: [String]
    /// Generation stops at any of these tokens (not emitted); nil means the model's end-of-text ids.
    public var stopTokens: Set<Int32>?
    /// Keep going through end-of-text tokens (benchmarks with fixed output lengths).
    public var ignoreEndOfText: Bool
    /// How many most-likely alternatives to report with each token's log-probability (nil: no
    /// log-probabilities at all; 0: only the chosen token's).
    public var topLogprobs: Int?

    public init(
        id: String, prompt: [Int32], sampling: SamplingParameters = .greedy, maxTokens: Int,
        stopStrings: [String] = [], stopTokens: Set<Int32>? = nil, ignoreEndOfText: Bool = false,
        topLogprobs: Int? = nil
    ) {
        self.id = id
        self.prompt = prompt
        self.sampling = sampling
        self.maxTokens = maxTokens
        self.stopStrings = stopStrings
        self.stopTokens = stopTokens
        self.ignoreEndOfText = ignoreEndOfText
        self.topLogprobs = topLogprobs
    }
}

/// A token's log-probability under the sampling distribution's logits (after penalties, before
/// temperature and the top-k/p filters, as OpenAI and vLLM report it).
public struct TokenLogprob: Sendable, Equatable {
    public var token: Int32
    /// The token's text (may be part of a UTF-8 character).
    public var text: String
    public var logprob: Float
    public init(token: Int32, text: String, logprob: Float) {
        self.token = token
        self.text = text
        self.logprob = logprob
    }
}

/// One generated token, as the stream reports it.
public struct GeneratedToken: Sendable, Equatable {
    public var token: Int32
    /// The text this token completes (empty while a UTF-8 character or a possible stop string is
    /// incomplete; the text is then carried by a later token).
    public var text: String
    /// Present when the request asked for log-probabilities.
    public var logprob: TokenLogprob?
    /// The `topLogprobs` most likely tokens at this step, most likely first.
    public var topLogprobs: [TokenLogprob]
    public init(token: Int32, text: String, logprob: TokenLogprob? = nil, topLogprobs: [TokenLogprob] = []) {
        self.token = token
        self.text = text
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }
}

/// Why a request's generation ended.
public enum FinishReason: String, Sendable, Equatable {
    /// An end-of-text token or a stop string.
    case stop
    /// `maxTokens` reached, or the model's context is full.
    case length
}

/// Token counts of one request (OpenAI's `usage`).
public struct Usage: Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens whose KV blocks came from the prefix cache.
    public var cachedPromptTokens: Int
    public var totalTokens: Int { promptTokens + completionTokens }
    public init(promptTokens: Int, completionTokens: Int, cachedPromptTokens: Int = 0) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cachedPromptTokens = cachedPromptTokens
    }
}

/// What a request's stream yields: tokens as they are generated, then exactly one `finished`.
public enum GenerationEvent: Sendable, Equatable {
    case tokens([GeneratedToken])
    case finished(FinishReason, Usage)
}

/// Why the engine refused or ended a request. `description` is the message for the user.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    /// The prompt plus at least one generated token do not fit the context.
    case promptTooLong(tokens: Int, contextLength: Int)
    /// The request can never fit the KV cache, even alone.
    case exceedsCache(tokens: Int, capacityTokens: Int)
    /// The waiting queue is full: try again later (HTTP 429).
    case overloaded(waiting: Int)
    case invalidRequest(String)
    /// The engine is shutting down or stopped after a runner failure.
    case stopped(String)
    /// The model runner failed on a step; the requests of that step end with this error.
    case runnerFailed(String)

    public var description: String {
        switch self {
        case let .promptTooLong(tokens, contextLength):
            "the prompt has \(tokens) tokens; the model's context is \(contextLength) tokens, which must also hold at least one generated token"
        case let .exceedsCache(tokens, capacity):
            "the request needs \(tokens) tokens of KV cache, more than the whole cache (\(capacity) tokens)"
        case let .overloaded(waiting):
            "the server is overloaded (\(waiting) requests waiting); retry later"
        case let .invalidRequest(message): "invalid request: \(message)"
        case let .stopped(why): "the engine is not running: \(why)"
        case let .runnerFailed(why): "the model failed: \(why)"
        }
    }
}

/// A snapshot of the engine's load, for metrics and tests.
public struct EngineStatistics: Sendable, Equatable {
    public var runningRequests: Int
    public var waitingRequests: Int
    public var kvBlocksInUse: Int
    public var kvBlocksTotal: Int
    /// Sequences in the last step.
    public var lastBatchSize: Int
    public var preemptions: Int
    public var prefixCacheHitTokens: Int
    public init(
        runningRequests: Int = 0, waitingRequests: Int = 0, kvBlocksInUse: Int = 0, kvBlocksTotal: Int = 0,
        lastBatchSize: Int = 0, preemptions: Int = 0, prefixCacheHitTokens: Int = 0
    ) {
        self.runningRequests = runningRequests
        self.waitingRequests = waitingRequests
        self.kvBlocksInUse = kvBlocksInUse
        self.kvBlocksTotal = kvBlocksTotal
        self.lastBatchSize = lastBatchSize
        self.preemptions = preemptions
        self.prefixCacheHitTokens = prefixCacheHitTokens
    }
}

/// What the server needs from an engine. `LLMEngine` is the implementation; tests may fake it.
public protocol GenerationEngine: AnyObject, Sendable {
    /// The name `/v1/models` reports.
    var modelName: String { get }
    var tokenizer: any Tokenizer { get }
    var chatTemplate: ChatTemplate { get }
    /// Positions a sequence may hold (prompt plus generated tokens).
    var contextLength: Int { get }
    /// Starts `request`; the stream yields its events. Throws `EngineError` at once when the request
    /// can never run (prompt too long, bad parameters) or the queue is full. Cancelling the consuming
    /// task, or dropping the stream, cancels the request and frees its KV blocks.
    func generate(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, any Error>
    var statistics: EngineStatistics { get }
    /// Stops accepting requests, ends the running ones (their streams finish with
    /// `EngineError.stopped`) and waits for the engine thread to exit.
    func shutdown() async
}
