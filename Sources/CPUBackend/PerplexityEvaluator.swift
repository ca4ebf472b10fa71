import Glibc

/// Perplexity of a model on a token sequence with a sliding window (as Hugging Face's guide computes it):
/// windows of `context` tokens start every `stride` tokens; each scores only the tokens that no earlier
/// window scored, predicting every token from all tokens before it in its window. With stride == context
/// the windows are disjoint and every token but the first of each window is scored; a smaller stride
/// gives the scored tokens more context, at more compute. No BOS is added: the text is scored as it is.
public struct PerplexityEvaluator {
    /// One window: the tokens it runs and the tokens it scores (indices into the whole sequence).
    public struct Window: Sendable, Equatable {
        public var tokens: Range<Int>
        public var scored: Range<Int>
    }

    /// Where the evaluation is, for a progress display.
    public struct Progress: Sendable {
        public var window: Int
        public var windowCount: Int
        public var scoredTokens: Int
        /// The perplexity of the tokens scored so far.
        public var perplexity: Double
    }

    public struct Result: Sendable {
        /// Tokens whose probability was scored.
        public var scoredTokens: Int
        /// Σ -log p(token | context), natural log.
        public var negativeLogLikelihood: Double
        public var windowCount: Int
        /// exp(mean negative log-likelihood).
        public var perplexity: Double { exp(negativeLogLikelihood / Double(max(scoredTokens, 1))) }
    }

    public let model: LlamaCPUModel
    public let context: Int
    public let stride: Int

    /// Throws when `context` is not in 2...(cache limit) or `stride` not in 1...context (a longer stride
    /// would leave tokens unscored).
    public init(model: LlamaCPUModel, context: Int, stride: Int) throws {
        guard context >= 2 else { throw CPUBackendError.unsupported("a perplexity context of \(context) tokens (at least 2)") }
        guard (1...context).contains(stride) else {
            throw CPUBackendError.unsupported("a stride of \(stride) with a context of \(context) (the stride must be 1...context)")
        }
        self.model = model
        self.context = context
        self.stride = stride
    }

    /// The windows for a sequence of `count` tokens.
    public func windows(count: Int) -> [Window] {
        Self.windows(count: count, context: context, stride: stride)
    }

    /// The windows of `context` tokens every `stride` tokens over a sequence of `count` tokens.
    public static func windows(count: Int, context: Int, stride: Int) -> [Window] {
        var windows: [Window] = []
        var scoredEnd = 0
        var begin = 0
        while begin < count, scoredEnd < count {
            let end = min(begin + context, count)
            let first = max(scoredEnd, begin + 1)
            if first < end { windows.append(Window(tokens: begin..<end, scored: first..<end)) }
            scoredEnd = end
            begin += stride
        }
        return windows
    }

    /// Scores `tokens`, calling `progress` after each window.
    public func evaluate(_ tokens: [Int32], progress: (Progress) -> Void = { _ in }) throws -> Result {
        let windows = windows(count: tokens.count)
        let cache = model.makeCache(capacity: context)
        let vocab = model.config.vocabularySize
        var logits: [Float] = []
        var nll = 0.0, scored = 0
        for (w, window) in windows.enumerated() {
            cache.reset()
            try model.forward(tokens[window.tokens], at: 0, cache: cache, logits: &logits, for: .all)
            logits.withUnsafeBufferPointer { all in
                for target in window.scored {
                    // Row r of the window's logits predicts the token after position r.
                    let row = all.baseAddress! + (target - 1 - window.tokens.lowerBound) * vocab
                    nll += Self.negativeLogProbability(row, count: vocab, of: Int(tokens[target]))
                }
            }
            scored += window.scored.count
            progress(Progress(window: w + 1, windowCount: windows.count, scoredTokens: scored,
                              perplexity: exp(nll / Double(scored))))
        }
        return Result(scoredTokens: scored, negativeLogLikelihood: nll, windowCount: windows.count)
    }

    /// -log softmax(logits)[index], in Double.
    static func negativeLogProbability(_ logits: UnsafePointer<Float>, count: Int, of index: Int) -> Double {
        var maximum = -Float.infinity
        for i in 0..<count where logits[i] > maximum { maximum = logits[i] }
        var sum = 0.0
        for i in 0..<count { sum += Double(expf(logits[i] - maximum)) }
        return Double(maximum) + log(sum) - Double(logits[index])
    }
}
