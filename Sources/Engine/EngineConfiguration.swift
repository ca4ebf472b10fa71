import Model

/// How an `LLMEngine` serves: limits on top of the runner's, and defaults for requests. Built at the
/// edge (CLI, server), validated once by `LLMEngine.init`.
public struct EngineConfiguration: Sendable {
    /// The name `/v1/models` reports.
    public var modelName: String
    /// The most sequences one step runs (nil: the runner's `maxStepSequences`).
    public var maxBatchSize: Int?
    /// The most tokens one step runs, prompts' chunks and decodes together (nil: the runner's
    /// `maxStepTokens`).
    public var maxStepTokens: Int?
    /// Requests that may wait for admission; `generate` throws `EngineError.overloaded` beyond it.
    public var maxWaitingRequests: Int
    /// Positions a sequence may hold, prompt and generated tokens (nil: the model's context length).
    public var contextLength: Int?
    /// The tokens that end generation when a request names none (nil: the tokenizer's end-of-text
    /// token and the chat template's end-of-turn token).
    public var endOfTextTokens: Set<Int32>?
    /// Reuse the KV blocks of prompt prefixes that earlier requests computed.
    public var prefixCaching: Bool
    /// The most alternatives a request may ask for in `topLogprobs`.
    public var maxTopLogprobs: Int

    public init(
        modelName: String, maxBatchSize: Int? = nil, maxStepTokens: Int? = nil, maxWaitingRequests: Int = 1024,
        contextLength: Int? = nil, endOfTextTokens: Set<Int32>? = nil, prefixCaching: Bool = true, maxTopLogprobs: Int = 20
    ) {
        self.modelName = modelName
        self.maxBatchSize = maxBatchSize
        self.maxStepTokens = maxStepTokens
        self.maxWaitingRequests = maxWaitingRequests
        self.contextLength = contextLength
        self.endOfTextTokens = endOfTextTokens
        self.prefixCaching = prefixCaching
        self.maxTopLogprobs = maxTopLogprobs
    }

    /// The tokens that end a model's text: the tokenizer's end-of-text token and the token that ends
    /// an assistant turn in its chat template (e.g. `<|im_end|>`, `<|eot_id|>`), where it has them.
    public static func endOfTextTokens(tokenizer: any Tokenizer, chatTemplate: ChatTemplate) -> Set<Int32> {
        Set([tokenizer.eosTokenID, tokenizer.tokenID(for: chatTemplate.endOfTurn)].compactMap { $0 })
    }
}

/// A configuration the engine cannot run with; `description` says which value and why.
public struct EngineConfigurationError: Error, Equatable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
