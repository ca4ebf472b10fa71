/// One row of a step to be sampled where the logits are (`ModelRunner.executeSampled`): the
/// request's parameters, the uniform draw from its own generator (so that a seed reproduces the
/// same tokens on that runner), and the occurrence counts its penalties look at.
public struct SamplingRow: Sendable {
    public var parameters: SamplingParameters
    /// Uniform in [0, 1): where in the kept probability mass, walked in id order, the token lies.
    public var uniform: Float
    /// (token, occurrences in the penalty window), each token once; empty without penalties.
    public var penaltyCounts: [(token: Int32, count: Int32)]
    /// Whether the token's log-probability is wanted (top-n log-probabilities are not offered here).
    public var wantsLogprob: Bool

    public init(parameters: SamplingParameters, uniform: Float, penaltyCounts: [(token: Int32, count: Int32)], wantsLogprob: Bool) {
        self.parameters = parameters
        self.uniform = uniform
        self.penaltyCounts = penaltyCounts
        self.wantsLogprob = wantsLogprob
    }
}

extension SamplingParameters {
    /// `logit` of a token seen `occurrences` times in the penalty window, penalized: repetition
    /// (divides a positive logit, multiplies a negative one), then frequency and presence. The
    /// fp32 operations apply_penalties (sampling.cu) does too.
    public func penalized(_ logit: Float, occurrences: Int32) -> Float {
        var logit = logit
        if repetitionPenalty != 1 { logit = logit > 0 ? logit / repetitionPenalty : logit * repetitionPenalty }
        return logit - (frequencyPenalty * Float(occurrences) + presencePenalty)
    }

    /// Occurrences of each token of `history`'s penalty window (the last `penaltyWindow` tokens, all
    /// when 0), ids outside 0 ..< vocabulary skipped; into `counts`, which is emptied first.
    public func countPenalized(_ history: some BidirectionalCollection<Int32>, vocabulary: Int, into counts: inout [Int32: Int32]) {
        counts.removeAll(keepingCapacity: true)
        guard hasPenalties else { return }
        let window = penaltyWindow == 0 ? history.count : penaltyWindow
        for id in history.suffix(window) where id >= 0 && Int(id) < vocabulary { counts[id, default: 0] += 1 }
    }
}

extension Sampler {
    /// The row to sample on a device for `history`: this sampler's parameters and its next uniform
    /// draw (the generator advances once per token, as `sample` does for a drawn token).
    public mutating func deviceRow(history: some BidirectionalCollection<Int32>, vocabulary: Int, wantsLogprob: Bool) -> SamplingRow {
        var counts: [Int32: Int32] = [:]
        parameters.countPenalized(history, vocabulary: vocabulary, into: &counts)
        let uniform = parameters.temperature == 0 ? 0 : random.nextUnitFloat()
        return SamplingRow(parameters: parameters, uniform: uniform, penaltyCounts: counts.map { ($0.key, $0.value) }, wantsLogprob: wantsLogprob)
    }
}
