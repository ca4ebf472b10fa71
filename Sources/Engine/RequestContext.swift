import Model
import Sampling

/// What the engine thread keeps for one request besides its sequence: its sampler, its text stream,
/// its stop tokens and where its events go.
final class RequestContext {
    let request: GenerationRequest
    let sequence: SequenceState
    let continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation
    var sampler: Sampler
    var text: GeneratedTextStream
    /// Tokens that end generation (not emitted).
    let stopTokens: Set<Int32>
    /// Tokens yielded or waiting in `text` to be yielded.
    var completionTokens = 0

    init(_ submitted: SubmittedRequest, tokenizer: any Tokenizer, endOfText: Set<Int32>) {
        request = submitted.request
        continuation = submitted.continuation
        sequence = SequenceState(id: submitted.id, prompt: submitted.request.prompt)
        sampler = Sampler(submitted.request.sampling)
        text = GeneratedTextStream(tokenizer: tokenizer, prompt: submitted.request.prompt, stopStrings: submitted.request.stopStrings)
        // `ignoreEndOfText` drops the model's end-of-text tokens even from an explicit list.
        var stops = submitted.request.stopTokens ?? endOfText
        if submitted.request.ignoreEndOfText { stops.subtract(endOfText) }
        stopTokens = stops
    }

    var usage: Usage {
        Usage(promptTokens: sequence.promptCount, completionTokens: completionTokens,
              cachedPromptTokens: sequence.cachedPromptTokens)
    }
}
