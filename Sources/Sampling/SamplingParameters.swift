/// How to pick the next token from logits. The defaults change nothing: plain sampling at temperature 1.
///
/// The order of operations (`Sampler.sample`): penalties on the logits of recent tokens, then greedy
/// argmax when `temperature == 0`; else logits / temperature, top-k, softmax, top-p, min-p and a draw
/// from the renormalized rest (vLLM's order: the filters see the tempered distribution).
public struct SamplingParameters: Sendable, Equatable {
    /// 0 picks the argmax (greedy); higher flattens the distribution.
    public var temperature: Float = 1
    /// Keep only the k most likely tokens (0: off).
    public var topK = 0
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: off).
    public var topP: Float = 1
    /// Drop tokens less likely than minP times the most likely one (0: off).
    public var minP: Float = 0
    /// CTRL-style: a seen token's positive logit is divided by it, a negative one multiplied (1: off).
    public var repetitionPenalty: Float = 1
    /// OpenAI-style: subtracted from a token's logit once per occurrence (0: off).
    public var frequencyPenalty: Float = 0
    /// OpenAI-style: subtracted once from the logit of every token that occurred (0: off).
    public var presencePenalty: Float = 0
    /// How many of the most recent tokens the penalties look at (0: all of them).
    public var penaltyWindow = 64
    /// Seed of the random draws: the same seed, logits and history give the same tokens on one kind
    /// of runner. The GPU runner samples with ThresholdSampling's procedure (the same distribution,
    /// walked in id order), so its tokens for a seed differ from the CPU runner's.
    public var seed: UInt64 = 0

    public init(
        temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1,
        frequencyPenalty: Float = 0, presencePenalty: Float = 0, penaltyWindow: Int = 64, seed: UInt64 = 0
    ) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty
        self.penaltyWindow = penaltyWindow
        self.seed = seed
    }

    /// Always the most likely token.
    public static let greedy = SamplingParameters(temperature: 0)

    /// True when the penalties change nothing.
    var hasPenalties: Bool { repetitionPenalty != 1 || frequencyPenalty != 0 || presencePenalty != 0 }

    /// Greedy with no penalties: the token is the logits' argmax, which a GPU runner can pick
    /// without copying the logits (`ModelRunner.executeGreedy`).
    public var isPlainGreedy: Bool { temperature == 0 && !hasPenalties }

    /// Throws `SamplingError.invalid` naming the first parameter out of range.
    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws {
            if !ok { throw SamplingError.invalid(message) }
        }
        try check(temperature >= 0 && temperature.isFinite, "temperature must be finite and >= 0 (0 is greedy), not \(temperature)")
        try check(topK >= 0, "top-k must be >= 0 (0 turns it off), not \(topK)")
        try check(topP > 0 && topP <= 1, "top-p must be in (0, 1] (1 turns it off), not \(topP)")
        try check(minP >= 0 && minP <= 1, "min-p must be in [0, 1] (0 turns it off), not \(minP)")
        try check(repetitionPenalty > 0 && repetitionPenalty.isFinite, "repetition penalty must be > 0 (1 turns it off), not \(repetitionPenalty)")
        try check(frequencyPenalty.isFinite && presencePenalty.isFinite, "frequency and presence penalties must be finite")
        try check(penaltyWindow >= 0, "the penalty window must be >= 0 (0: the whole history), not \(penaltyWindow)")
    }
}

/// A sampling parameter out of range; `description` is the message to print.
public enum SamplingError: Error, Equatable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case let .invalid(message): "invalid sampling parameter: \(message)"
        }
    }
}
