import Dispatch
import Model
import Sampling

/// The engine thread's loop: take new requests and cancellations, schedule a step, run it, sample,
/// update each request and yield its events; sleep when there is nothing to run.
final class EngineLoop: @unchecked Sendable {
    // @unchecked: only the engine thread touches it once `run()` starts; `mailbox` is the shared part.

    private let runner: any ModelRunner
    private let scheduler: Scheduler
    private let mailbox: EngineMailbox
    private let tokenizer: any Tokenizer
    private let contextLength: Int
    private let endOfText: Set<Int32>
    private let vocabularySize: Int
    private var contexts: [UInt64: RequestContext] = [:]
    /// Events of this loop iteration, delivered once the statistics are published: a caller that sees
    /// a request finish then also sees its blocks freed.
    private var outbox: [(continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation, delivery: Delivery)] = []
    /// [rows, vocab]: the runner's output, reused between steps.
    private var logits: [Float] = []
    /// [rows]: the runner's greedy tokens, for steps where every row is plain greedy.
    private var greedyTokens: [Int32] = []
    /// [rows]: the runner's tokens, for steps sampled on its device.
    private var deviceTokens: [SampledToken] = []
    private var lastBatchSize = 0

    init(
        runner: any ModelRunner, scheduler: Scheduler, mailbox: EngineMailbox, tokenizer: any Tokenizer,
        contextLength: Int, endOfText: Set<Int32>
    ) {
        self.runner = runner
        self.scheduler = scheduler
        self.mailbox = mailbox
        self.tokenizer = tokenizer
        self.contextLength = contextLength
        self.endOfText = endOfText
        vocabularySize = runner.config.vocabularySize
    }

    func run() {
        while true {
            let work = mailbox.nextWork(idle: !scheduler.hasWork)
            for submitted in work.submitted {
                let context = RequestContext(submitted, tokenizer: tokenizer, endOfText: endOfText)
                contexts[submitted.id] = context
                scheduler.add(context.sequence)
            }
            for id in work.cancelled {
                // Unknown ids are requests that already ended.
                if let context = contexts[id] { end(context, error: nil) }
            }
            if let reason = work.shutdown {
                for context in contexts.values { end(context, error: .stopped(reason)) }
                publish()
                deliver()
                break
            }
            if scheduler.hasWork { step() }
            publish()
            deliver()
        }
    }

    /// What happens to a request's stream.
    private enum Delivery {
        case event(GenerationEvent)
        /// The stream ends, with an error or (nil) normally.
        case end(EngineError?)
    }

    private func send(_ delivery: Delivery, to context: RequestContext) {
        outbox.append((context.continuation, delivery))
    }

    /// Yields the queued events, outside any lock (a stream's termination handler takes the mailbox's).
    private func deliver() {
        for (continuation, delivery) in outbox {
            switch delivery {
            case let .event(event): continuation.yield(event)
            case .end(nil): continuation.finish()
            case let .end(error?): continuation.finish(throwing: error)
            }
        }
        outbox.removeAll(keepingCapacity: true)
    }

    /// Schedules, runs and updates one step.
    private func step() {
        let output = scheduler.schedule()
        lastBatchSize = output.chunks.count
        // Published before the (long) step runs, so that load and queue figures are current during it.
        publish()
        guard !output.chunks.isEmpty else {
            // Cannot happen while requests that do not fit the cache alone are refused at submission;
            // ending the first one keeps the loop from spinning if it ever does.
            if let stuck = (scheduler.running.first ?? scheduler.waiting.first).flatMap({ contexts[$0.id] }) {
                end(stuck, error: .exceedsCache(tokens: stuck.sequence.tokens.count,
                                                capacityTokens: scheduler.configuration.blockCount * scheduler.configuration.blockSize))
            }
            return
        }
        // When every row is plain greedy without log-probabilities, the runner picks the tokens
        // itself (on the GPU: S ids cross to the host instead of S x vocab logits).
        let greedy = output.chunks.allSatisfy { chunk in
            guard chunk.needsLogits else { return true }
            guard let request = contexts[chunk.sequence.id]?.request else { return false }
            return request.sampling.isPlainGreedy && request.topLogprobs == nil
        }
        let rows = output.chunks.reduce(0) { $0 + ($1.needsLogits ? 1 : 0) }
        // Otherwise, where the runner samples on its device and no row asks for top-n
        // log-probabilities, the rows' parameters go to it instead of the logits coming back.
        let rowContexts = output.chunks.filter(\.needsLogits).map { contexts[$0.sequence.id] }
        let onDevice = !greedy && runner.samplesOnDevice && rowContexts.allSatisfy { ($0?.request.topLogprobs ?? 0) == 0 }
        do {
            if greedy {
                try runner.executeGreedy(output.stepSequences, tokens: &greedyTokens)
                guard greedyTokens.count == rows else {
                    throw EngineError.runnerFailed("the runner returned \(greedyTokens.count) tokens for \(rows) rows")
                }
            } else if onDevice {
                let samplingRows = rowContexts.map { context in
                    guard let context else {  // cancelled meanwhile: any row will do
                        return SamplingRow(parameters: .greedy, uniform: 0, penaltyCounts: [], wantsLogprob: false)
                    }
                    return context.sampler.deviceRow(
                        history: context.sequence.tokens, vocabulary: vocabularySize, wantsLogprob: context.request.topLogprobs != nil)
                }
                try runner.executeSampled(output.stepSequences, rows: samplingRows, tokens: &deviceTokens)
                guard deviceTokens.count == rows else {
                    throw EngineError.runnerFailed("the runner returned \(deviceTokens.count) sampled tokens for \(rows) rows")
                }
            } else {
                try runner.execute(output.stepSequences, logits: &logits)
                guard logits.count == rows * vocabularySize else {
                    throw EngineError.runnerFailed("the runner returned \(logits.count) logits for \(rows) rows of \(vocabularySize)")
                }
            }
        } catch {
            let failure = (error as? EngineError) ?? .runnerFailed("\(error)")
            for chunk in output.chunks {
                if let context = contexts[chunk.sequence.id] { end(context, error: failure) }
            }
            return
        }
        scheduler.didRun(output)
        if greedy {
            for (row, context) in rowContexts.enumerated() {
                if let context { advance(context, SampledToken(token: greedyTokens[row])) }
            }
        } else if onDevice {
            for (row, context) in rowContexts.enumerated() {
                if let context { advance(context, deviceTokens[row]) }
            }
        } else {
            for (row, sampled) in sampleRows(rowContexts).enumerated() {
                if let context = rowContexts[row], let sampled { advance(context, sampled) }
            }
        }
    }

    /// Each row's next token from its request's sampler, rows on all cores: one row of a 128K
    /// vocabulary with top-p takes milliseconds (Sampler), and a step can have hundreds.
    private func sampleRows(_ rowContexts: [RequestContext?]) -> [SampledToken?] {
        var sampled = [SampledToken?](repeating: nil, count: rowContexts.count)
        let vocabularySize = vocabularySize
        logits.withUnsafeBufferPointer { logits in
            sampled.withUnsafeMutableBufferPointer { slots in
                let sampled = slots
                let sample = { (row: Int) in
                    // Row `row` touches only its own context (its sampler) and its own output slot.
                    guard let context = rowContexts[row] else { return }
                    sampled[row] = context.sampler.sample(
                        logits[(row * vocabularySize)..<((row + 1) * vocabularySize)], history: context.sequence.tokens,
                        topLogprobs: context.request.topLogprobs)
                }
                if rowContexts.count == 1 {
                    sample(0)
                } else {
                    // The contexts are not Sendable; each iteration owns a distinct one (one row per
                    // sequence), and all are done before concurrentPerform returns.
                    withoutActuallyEscaping(sample) { sample in
                        DispatchQueue.concurrentPerform(iterations: rowContexts.count, execute: unsafeBitCast(sample, to: (@Sendable (Int) -> Void).self))
                    }
                }
            }
        }
        return sampled
    }

    /// Samples the request's next token and yields what it completes; ends the request at a stop
    /// token, a stop string, its token limit or the context's end.
    private func advance(_ context: RequestContext, _ sampled: SampledToken) {
        let sequence = context.sequence
        if context.stopTokens.contains(sampled.token) {
            finish(context, .stop)
            return
        }
        sequence.append(sampled.token)
        context.completionTokens += 1
        var token = GeneratedToken(token: sampled.token, text: "")
        if let logprob = sampled.logprob {
            token.logprob = TokenLogprob(token: sampled.token, text: text(of: sampled.token), logprob: logprob)
            token.topLogprobs = sampled.topLogprobs.map {
                TokenLogprob(token: $0.token, text: text(of: $0.token), logprob: $0.logprob)
            }
        }
        let (ready, stopped) = context.text.append(token)
        if !ready.isEmpty { send(.event(.tokens(ready)), to: context) }
        if stopped {
            finish(context, .stop)
        } else if context.completionTokens >= context.request.maxTokens || sequence.tokens.count >= contextLength {
            finish(context, .length)
        }
    }

    /// Yields the held-back tokens and `finished`, and forgets the request.
    private func finish(_ context: RequestContext, _ reason: FinishReason) {
        let rest = context.text.finish()
        if !rest.isEmpty { send(.event(.tokens(rest)), to: context) }
        send(.event(.finished(reason, context.usage)), to: context)
        end(context, error: nil)
    }

    /// Ends the request's stream (with `error`, if any), frees its blocks and forgets it.
    private func end(_ context: RequestContext, error: EngineError?) {
        scheduler.remove(context.sequence)
        contexts[context.sequence.id] = nil
        send(.end(error), to: context)
    }

    /// A token's own text, for log-probabilities (may be part of a character).
    private func text(of token: Int32) -> String {
        var bytes: [UInt8] = []
        tokenizer.appendBytes(of: token, atStart: false, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    private func publish() {
        mailbox.publish(EngineStatistics(
            runningRequests: scheduler.running.count, waitingRequests: scheduler.waiting.count,
            kvBlocksInUse: scheduler.blocksInUse, kvBlocksTotal: scheduler.configuration.blockCount,
            lastBatchSize: lastBatchSize, preemptions: scheduler.preemptionCount,
            prefixCacheHitTokens: scheduler.prefixCacheHitTokens))
    }
}
