import CPUBackend
import Foundation
import Model
import Testing

/// The CPU forward pass on the real model against an independent numpy fp32 forward of the same
/// dequantized weights, and against llama.cpp's greedy tokens (scripts/make_golden_logits.py).
///
/// Tolerance rule: every compared logit (the reference's top 20 and 64 fixed ids of the last prompt
/// position) satisfies |ours - ref| <= 1e-3 * max(1, |ref|); the L2 norm of all its logits is within
/// 1e-3 relative, and their sum within 1e-3 of the sum of absolute values. Greedy tokens are identical
/// to numpy's. A debug build runs about a token per second, so each prompt and its greedy continuation
/// run as one teacher-forced batch: argmax at every position equals the next golden token exactly when
/// greedy decoding reproduces it (`prefillAndDecodeAgree` checks that a batch equals one-token steps).
@Suite(.enabled(if: TestModel.path != nil, TestModel.missing), .serialized)
struct SmolLM2ForwardTests {
    static let tolerance = 1e-3

    @Test func logitsAndGreedyTokensMatchNumpyAndLlamaCpp() throws {
        let (model, tokenizer) = try TestModel.load()
        let golden = try LogitsGolden.load()
        let vocab = model.config.vocabularySize
        var agreedWithLlamaCpp = 0
        for c in golden.cases {
            #expect(tokenizer.encode(c.text, addBOS: false, parseSpecial: true) == c.ids, "tokenizer ids of \(c.text.debugDescription)")
            // The prompt and all but the last golden greedy token, logits at every position.
            let tokens = c.ids + c.greedy.dropLast()
            let cache = model.makeCache(capacity: tokens.count)
            var logits: [Float] = []
            try model.forward(tokens, at: 0, cache: cache, logits: &logits, for: .all)
            #expect(logits.count == tokens.count * vocab)
            #expect(cache.count == tokens.count)
            func row(_ position: Int) -> ArraySlice<Float> { logits[(position * vocab)..<((position + 1) * vocab)] }

            let last = Array(row(c.ids.count - 1))
            for pair in c.top + c.fixed {
                let id = Int(pair[0]), ref = pair[1]
                let ours = Double(last[id])
                #expect(abs(ours - ref) <= Self.tolerance * max(1, abs(ref)),
                        "logit \(id) of \(c.text.debugDescription): \(ours) vs numpy \(ref)")
            }
            let norm = last.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            let sum = last.reduce(0.0) { $0 + Double($1) }
            #expect(abs(norm - c.norm) <= Self.tolerance * c.norm, "L2 norm \(norm) vs \(c.norm)")
            #expect(abs(sum - c.sum) <= Self.tolerance * c.absSum, "sum \(sum) vs \(c.sum)")

            let greedy = (0..<golden.greedySteps).map { argmax(row(c.ids.count - 1 + $0)) }
            #expect(greedy == c.greedy, "greedy continuation of \(c.text.debugDescription)")

            // llama.cpp multiplies Q4_1 weights with 8-bit-quantized activations, so where its first two
            // choices are close it may pick differently from exact fp32. Rule: identical until the first
            // difference (if any), and there llama.cpp's own margin must be a near tie (< 0.5 nats).
            guard let llama = c.llamaCpp else { continue }
            let agree = zip(greedy, llama.tokens).prefix { $0 == $1 }.count
            agreedWithLlamaCpp += agree
            if agree < llama.tokens.count {
                #expect(llama.margins[agree] < 0.5,
                        "\(c.text.debugDescription): llama.cpp picked \(llama.tokens[agree]) at step \(agree) with margin \(llama.margins[agree]), we picked \(greedy[agree])")
            }
        }
        // The fixture's prompts agree on 53 of 64 tokens (one near tie at step 5 of the first prompt).
        #expect(agreedWithLlamaCpp >= 53)
    }

    /// A prompt run as one batch (in chunks of maxBatchTokens 8), or one token at a time: the same
    /// logits; and rewinding the cache to an earlier position and continuing overwrites what was there.
    @Test func prefillAndDecodeAgree() throws {
        let (model, _) = try TestModel.load()
        let ids = try LogitsGolden.load().cases[0].ids
        let batch = model.makeCache(capacity: 16), single = model.makeCache(capacity: 16)
        var all: [Float] = [], step: [Float] = []
        try model.forward(ids, at: 0, cache: batch, logits: &all, for: .all)
        let vocab = model.config.vocabularySize
        for (t, id) in ids.enumerated() {
            try model.forward([id], at: t, cache: single, logits: &step)
            let row = all[(t * vocab)..<((t + 1) * vocab)]
            let worst = zip(row, step).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-3, "position \(t): batch and one-token logits differ by \(worst)")
        }
        try model.forward([7, 8, 9], at: 2, cache: single, logits: &step)   // a different continuation
        #expect(single.count == 5)
        try model.forward(ids[2...], at: 2, cache: single, logits: &step)   // back to the prompt
        let last = all[((ids.count - 1) * vocab)...]
        #expect(zip(last, step).allSatisfy { abs($0 - $1) <= 1e-3 })
    }

    @Test func badCallsThrowClearErrors() throws {
        let (model, _) = try TestModel.load()
        let cache = model.makeCache(capacity: 4)
        var logits: [Float] = []
        #expect(throws: CPUBackendError.tokenOutOfRange(id: 49152, vocabularySize: 49152)) {
            try model.forward([49152], at: 0, cache: cache, logits: &logits)
        }
        #expect(throws: CPUBackendError.positionGap(position: 1, cached: 0)) {
            try model.forward([1], at: 1, cache: cache, logits: &logits)
        }
        #expect(throws: CPUBackendError.contextFull(needed: 5, capacity: 4)) {
            try model.forward([1, 2, 3, 4, 5], at: 0, cache: cache, logits: &logits)
        }
    }

    @Test func perplexityOfOneWindowIsTheMeanNegativeLogLikelihood() throws {
        let (model, _) = try TestModel.load()
        let ids = try LogitsGolden.load().cases[0].ids
        let cache = model.makeCache(capacity: ids.count)
        var logits: [Float] = []
        try model.forward(ids, at: 0, cache: cache, logits: &logits, for: .all)
        let vocab = model.config.vocabularySize
        var nll = 0.0
        for t in 1..<ids.count {
            let row = logits[((t - 1) * vocab)..<(t * vocab)].map(Double.init)
            let maximum = row.max()!
            nll += maximum + log(row.reduce(0) { $0 + exp($1 - maximum) }) - row[Int(ids[t])]
        }
        let evaluator = try PerplexityEvaluator(model: model, context: 64, stride: 64)
        let result = try evaluator.evaluate(ids)
        #expect(result.scoredTokens == ids.count - 1)
        #expect(abs(result.negativeLogLikelihood - nll) <= 1e-3 * nll)
        // A plain sentence: a low perplexity, nowhere near a broken model's ~vocabulary size.
        #expect(result.perplexity > 1 && result.perplexity < 1000, "perplexity \(result.perplexity)")
    }
}

/// The index (from the start of `logits`) of its first largest value; this target does not depend on Sampling.
func argmax(_ logits: ArraySlice<Float>) -> Int32 {
    var best = logits.startIndex
    for i in logits.indices where logits[i] > logits[best] { best = i }
    return Int32(best - logits.startIndex)
}
