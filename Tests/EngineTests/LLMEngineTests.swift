@testable import Engine
import Foundation
import Model
import Sampling
import Testing

/// `LLMEngine` on `FakeRunner`: outputs against `FakeModel.greedy`, the lifecycle of streams, limits
/// and refusals.
@Suite struct LLMEngineTests {
    static func prompt(_ seed: Int, length: Int) -> [Int32] {
        (0..<length).map { Int32(2 + (seed * 7 + $0 * 3) % 26) }
    }

    @Test func concurrentGreedyRequestsMatchTheModel() async throws {
        let engine = try makeEngine(FakeRunner())
        let prompts = (0..<6).map { Self.prompt($0, length: 3 + 4 * $0) }
        let results = try await withThrowingTaskGroup(of: (Int, Collected).self) { group in
            for (i, prompt) in prompts.enumerated() {
                let stream = try engine.generate(GenerationRequest(id: "\(i)", prompt: prompt, maxTokens: 12))
                group.addTask { (i, await collect(stream)) }
            }
            return try await group.reduce(into: [Int: Collected]()) { $0[$1.0] = $1.1 }
        }
        for (i, prompt) in prompts.enumerated() {
            let result = try #require(results[i])
            let expected = FakeModel.greedy(prompt, maxTokens: 12)
            #expect(result.error == nil)
            #expect(result.ids == expected, "request \(i)")
            #expect(result.finish?.reason == (expected.count == 12 ? .length : .stop))
            #expect(result.finish?.usage == Usage(promptTokens: prompt.count, completionTokens: expected.count))
            #expect(result.text == FakeTokenizer().decode(expected))
            #expect(result.eventsAfterFinish == 0)
        }
        let statistics = engine.statistics
        #expect(statistics.kvBlocksInUse == 0 && statistics.runningRequests == 0 && statistics.waitingRequests == 0)
        await engine.shutdown()
    }

    /// The invariant under load: random prompts (many sharing prefixes), lengths, sampling, stop
    /// conditions and cancellations, and a cache so small that sequences are preempted. Every request
    /// ends with exactly one `finished` or an error, every finished one says what the model says (so
    /// preemption and shared blocks change nothing), and all blocks come back.
    @Test(arguments: [(1, true), (2, true), (3, true), (4, false), (5, false)])
    func randomLoadWithPreemptionAndCancellationKeepsTheInvariants(seed: Int, prefixCaching: Bool) async throws {
        let runner = FakeRunner(blockSize: 4, blocks: 24, maxStepTokens: 16, maxStepSequences: 6, contextLength: 64)
        let engine = try makeEngine(runner) {
            $0.maxWaitingRequests = 1000
            $0.prefixCaching = prefixCaching
        }
        var random = SplitMix(seed: UInt64(seed))
        let shared = Self.prompt(seed, length: 9)
        var cases: [(request: GenerationRequest, cancelAfter: Int?)] = []
        for i in 0..<80 {
            let own = Self.prompt(i * 13 + seed, length: 1 + Int(random.next() % 20))
            let prompt = random.next() % 2 == 0 ? shared + own : own
            let sampling = random.next() % 3 == 0 ? SamplingParameters(temperature: 0.9, topK: 20, seed: random.next()) : .greedy
            let cancel = random.next() % 5 == 0 ? Int(random.next() % 4) : nil
            cases.append((GenerationRequest(id: "\(i)", prompt: prompt, sampling: sampling, maxTokens: 1 + Int(random.next() % 40),
                                            ignoreEndOfText: random.next() % 3 == 0), cancel))
        }
        let results = try await withThrowingTaskGroup(of: (Int, Collected).self) { group in
            for (i, c) in cases.enumerated() {
                let stream = try engine.generate(c.request)
                group.addTask {
                    guard let limit = c.cancelAfter else { return (i, await collect(stream)) }
                    // Stop listening after `limit` events: the engine sees the stream end and cancels.
                    var seen = 0, result = Collected()
                    for try await event in stream {
                        if case let .tokens(tokens) = event { result.tokens += tokens }
                        if case let .finished(reason, usage) = event { result.finish = (reason, usage) }
                        seen += 1
                        if seen > limit { break }
                    }
                    return (i, result)
                }
            }
            return try await group.reduce(into: [Int: Collected]()) { $0[$1.0] = $1.1 }
        }
        var finished = 0
        for (i, c) in cases.enumerated() {
            let result = try #require(results[i])
            #expect(result.error == nil, "request \(i): \(String(describing: result.error))")
            #expect(result.eventsAfterFinish == 0)
            let expected = FakeModel.generate(c.request.prompt, sampling: c.request.sampling, maxTokens: c.request.maxTokens,
                                              stop: c.request.ignoreEndOfText ? [] : [FakeTokenizer.eos], contextLength: 64)
            if let finish = result.finish {
                finished += 1
                #expect(result.ids == expected, "request \(i)")
                #expect(finish.usage.completionTokens == expected.count)
            } else {
                #expect(c.cancelAfter != nil, "request \(i) ended without finishing")
                #expect(Array(expected.prefix(result.ids.count)) == result.ids, "request \(i) before it was cancelled")
            }
        }
        #expect(finished >= 40)
        try await waitUntil { engine.statistics.runningRequests == 0 && engine.statistics.waitingRequests == 0 }
        let statistics = engine.statistics
        #expect(statistics.kvBlocksInUse == 0)
        #expect(statistics.preemptions > 0, "the cache was meant to be too small")
        #expect((statistics.prefixCacheHitTokens > 0) == prefixCaching)
        await engine.shutdown()
    }

    @Test func aRepeatedPromptReusesItsCachedBlocksAndSaysTheSame() async throws {
        let runner = FakeRunner(blockSize: 4)
        let engine = try makeEngine(runner)
        let prompt = Self.prompt(5, length: 18)
        let first = await collect(try engine.generate(GenerationRequest(id: "a", prompt: prompt, maxTokens: 8, ignoreEndOfText: true)))
        let second = await collect(try engine.generate(GenerationRequest(id: "b", prompt: prompt, maxTokens: 8, ignoreEndOfText: true)))
        #expect(first.ids == FakeModel.greedy(prompt, maxTokens: 8, stop: []))
        #expect(second.ids == first.ids)
        #expect(first.finish?.usage.cachedPromptTokens == 0)
        #expect(second.finish?.usage.cachedPromptTokens == 16, "4 full blocks of the 18-token prompt")
        // Its first step ran only the last 2 prompt tokens.
        let steps = runner.steps.withLock { $0 }
        let firstOfSecond = try #require(steps.first { $0.first?.tokens == Array(prompt[16...]) })
        #expect(firstOfSecond[0].firstPosition == 16)
        #expect(engine.statistics.prefixCacheHitTokens == 16)
        await engine.shutdown()
    }

    @Test func withMaxBatchSizeOneRequestsRunInArrivalOrder() async throws {
        let runner = FakeRunner()
        let engine = try makeEngine(runner) { $0.maxBatchSize = 1 }
        let streams = try (0..<4).map { i in
            try engine.generate(GenerationRequest(id: "\(i)", prompt: Self.prompt(i, length: 3), maxTokens: 3, ignoreEndOfText: true))
        }
        for stream in streams { _ = await collect(stream) }
        let order = runner.steps.withLock { steps in steps.map { $0[0].tokens.count == 3 ? Int($0[0].tokens[0]) : nil } }
            .compactMap { $0 }
        #expect(order == (0..<4).map { Int(Self.prompt($0, length: 3)[0]) })
        await engine.shutdown()
    }

    @Test func aFullQueueThrowsOverloaded() async throws {
        let runner = FakeRunner()
        let gate = Gate()
        runner.beforeStep.withLock { $0 = { _ in gate.wait() } }
        let engine = try makeEngine(runner) { $0.maxWaitingRequests = 2; $0.maxBatchSize = 1 }
        let first = try engine.generate(GenerationRequest(id: "0", prompt: [2, 3], maxTokens: 2))
        try await waitUntil { engine.statistics.runningRequests == 1 }
        let waiting = try (1...2).map { try engine.generate(GenerationRequest(id: "\($0)", prompt: [2, 3], maxTokens: 2)) }
        #expect(engine.statistics.waitingRequests == 2)
        #expect(throws: EngineError.overloaded(waiting: 2)) {
            try engine.generate(GenerationRequest(id: "3", prompt: [2, 3], maxTokens: 2))
        }
        gate.open()
        for stream in [first] + waiting { #expect(await collect(stream).finish != nil) }
        await engine.shutdown()
    }

    @Test func impossibleRequestsAreRefusedAtOnce() async throws {
        let engine = try makeEngine(FakeRunner(blockSize: 4, blocks: 4, contextLength: 32))
        func refusal(_ request: GenerationRequest) -> EngineError? {
            do { _ = try engine.generate(request); return nil } catch { return error as? EngineError }
        }
        #expect(refusal(GenerationRequest(id: "", prompt: [], maxTokens: 1)) == .invalidRequest("the prompt is empty"))
        #expect(refusal(GenerationRequest(id: "", prompt: [64], maxTokens: 1))
            == .invalidRequest("token id 64 is outside the model's vocabulary (0..<64)"))
        #expect(refusal(GenerationRequest(id: "", prompt: [2], maxTokens: 0)) != nil)
        #expect(refusal(GenerationRequest(id: "", prompt: [2], sampling: SamplingParameters(temperature: -1), maxTokens: 1)) != nil)
        #expect(refusal(GenerationRequest(id: "", prompt: [2], maxTokens: 1, topLogprobs: 21)) != nil)
        #expect(refusal(GenerationRequest(id: "", prompt: [2], maxTokens: 1, stopStrings: [""])) != nil)
        #expect(refusal(GenerationRequest(id: "", prompt: Array(repeating: 2, count: 32), maxTokens: 1))
            == .promptTooLong(tokens: 32, contextLength: 32))
        // 16 positions of cache: 10 prompt + 7 generated would hold 16 positions; 8 would need 17.
        #expect(refusal(GenerationRequest(id: "", prompt: Array(repeating: 2, count: 10), maxTokens: 7)) == nil)
        #expect(refusal(GenerationRequest(id: "", prompt: Array(repeating: 2, count: 10), maxTokens: 8))
            == .exceedsCache(tokens: 17, capacityTokens: 16))
        await engine.shutdown()
        #expect(refusal(GenerationRequest(id: "", prompt: [2], maxTokens: 1)) == .stopped("the engine was shut down"))
    }

    @Test func shutdownEndsRunningRequestsWithStopped() async throws {
        let runner = FakeRunner()
        let gate = Gate()
        runner.beforeStep.withLock { $0 = { _ in gate.wait() } }
        let engine = try makeEngine(runner)
        let streams = try (0..<3).map { try engine.generate(GenerationRequest(id: "\($0)", prompt: [2, 3, 4], maxTokens: 50, ignoreEndOfText: true)) }
        try await waitUntil { engine.statistics.runningRequests == 3 }
        let shutdown = Task { await engine.shutdown() }
        try await waitUntil { engine.isShuttingDown }
        gate.open()
        await shutdown.value
        for stream in streams {
            let result = await collect(stream)
            #expect(result.finish == nil)
            #expect(result.error as? EngineError == .stopped("the engine was shut down"))
        }
        #expect(engine.statistics.kvBlocksInUse == 0)
    }

    @Test func aRunnerFailureEndsThatStepsRequestsAndTheEngineGoesOn() async throws {
        let runner = FakeRunner()
        runner.beforeStep.withLock { $0 = { step in if step == 1 { throw FakeRunner.Failure(description: "boom") } } }
        let engine = try makeEngine(runner)
        let failed = await collect(try engine.generate(GenerationRequest(id: "a", prompt: [2, 3], maxTokens: 5, ignoreEndOfText: true)))
        #expect(failed.error as? EngineError == .runnerFailed("boom"))
        #expect(failed.ids.count == 1, "the first step's token came out")
        let next = await collect(try engine.generate(GenerationRequest(id: "b", prompt: [2, 3], maxTokens: 5, ignoreEndOfText: true)))
        #expect(next.ids == FakeModel.greedy([2, 3], maxTokens: 5, stop: []))
        #expect(engine.statistics.kvBlocksInUse == 0)
        await engine.shutdown()
    }

    @Test func cancellingTheConsumerFreesTheBlocks() async throws {
        let runner = FakeRunner()
        let gate = Gate()
        // The engine stalls in its sixth step, holding the request's blocks.
        runner.beforeStep.withLock { $0 = { step in if step == 5 { gate.wait() } } }
        let engine = try makeEngine(runner)
        let stream = try engine.generate(GenerationRequest(id: "a", prompt: [2, 3, 4, 5, 6], maxTokens: 200, ignoreEndOfText: true))
        let task = Task {
            var count = 0
            for try await _ in stream { count += 1 }
            return count
        }
        try await waitUntil { runner.steps.withLock { $0.count } == 6 }
        #expect(engine.statistics.kvBlocksInUse == 3)
        task.cancel()
        _ = try? await task.value
        gate.open()
        try await waitUntil { engine.statistics.runningRequests == 0 }
        #expect(engine.statistics.kvBlocksInUse == 0)
        // The engine goes on serving.
        #expect(await collect(try engine.generate(GenerationRequest(id: "b", prompt: [2], maxTokens: 2, ignoreEndOfText: true))).ids.count == 2)
        await engine.shutdown()
    }

    @Test func stopTokensEndOfTextAndTheContextLimit() async throws {
        let engine = try makeEngine(FakeRunner(contextLength: 64)) { $0.contextLength = 20 }
        // Find a prompt whose greedy continuation meets EOS early.
        let prompt = try #require((0..<500).lazy.map { Self.prompt($0, length: 4) }.first {
            let output = FakeModel.greedy($0, maxTokens: 10, stop: [])
            return output.contains(FakeTokenizer.eos) && output.first != FakeTokenizer.eos
        })
        let full = FakeModel.greedy(prompt, maxTokens: 16, stop: [])
        let stopped = await collect(try engine.generate(GenerationRequest(id: "a", prompt: prompt, maxTokens: 16)))
        #expect(stopped.ids == Array(full.prefix { $0 != FakeTokenizer.eos }) && stopped.finish?.reason == .stop)
        let through = await collect(try engine.generate(GenerationRequest(id: "b", prompt: prompt, maxTokens: 100, ignoreEndOfText: true)))
        #expect(through.ids == full && through.finish?.reason == .length, "4 prompt + 16 generated = the context of 20")
        let custom = full[2]
        let own = await collect(try engine.generate(GenerationRequest(id: "c", prompt: prompt, maxTokens: 16, stopTokens: [custom])))
        #expect(own.ids == Array(full.prefix { $0 != custom }) && own.finish?.reason == .stop)
        await engine.shutdown()
    }

    /// A stop string taken from the middle of the model's own text: the text stops right before it,
    /// spanning tokens or not, and the tokens after it never come out.
    @Test(arguments: [(5, 2), (9, 3), (13, 1)])
    func stopStringsEndTheTextBeforeThem(start: Int, length: Int) async throws {
        let engine = try makeEngine(FakeRunner())
        let prompt = Self.prompt(11, length: 6)
        let tokens = FakeModel.greedy(prompt, maxTokens: 40, stop: [])
        let text = Array(FakeTokenizer().decode(tokens).utf8)
        let stop = String(decoding: text[start..<(start + length)], as: UTF8.self)
        let result = await collect(try engine.generate(GenerationRequest(
            id: "s", prompt: prompt, maxTokens: 40, stopStrings: [stop, "never seen"], ignoreEndOfText: true)))
        let expected = String(decoding: text, as: UTF8.self).components(separatedBy: stop)[0]
        #expect(result.text == expected)
        #expect(result.finish?.reason == .stop)
        #expect(!result.text.contains(stop))
        await engine.shutdown()
    }

    @Test func logprobsAreTheLogSoftmaxOfTheLogits() async throws {
        let engine = try makeEngine(FakeRunner())
        let prompt: [Int32] = [7, 8, 9]
        let result = await collect(try engine.generate(GenerationRequest(
            id: "l", prompt: prompt, maxTokens: 3, ignoreEndOfText: true, topLogprobs: 2)))
        var context = prompt
        for token in result.tokens {
            let logits = FakeModel.logits(after: context)
            let lse = LogSoftmax.logSumExp(logits)
            let logprob = try #require(token.logprob)
            #expect(logprob.token == token.token && abs(logprob.logprob - (logits[Int(token.token)] - lse)) < 1e-5)
            #expect(logprob.text == FakeTokenizer().decode([token.token]))
            #expect(token.topLogprobs.count == 2 && token.topLogprobs[0].token == token.token)
            #expect(token.topLogprobs[1].logprob <= token.topLogprobs[0].logprob)
            context.append(token.token)
        }
        await engine.shutdown()
    }

    /// Seeded sampling gives the same tokens whether or not the request was preempted along the way.
    @Test func seededSamplingDoesNotDependOnScheduling() async throws {
        let sampling = SamplingParameters(temperature: 1, seed: 42)
        let prompt = Self.prompt(3, length: 5)
        let alone = try makeEngine(FakeRunner(blocks: 64))
        let reference = await collect(try alone.generate(GenerationRequest(id: "r", prompt: prompt, sampling: sampling, maxTokens: 20, ignoreEndOfText: true)))
        await alone.shutdown()

        let tight = try makeEngine(FakeRunner(blockSize: 2, blocks: 14))
        let streams = try (0..<3).map { i in
            try tight.generate(GenerationRequest(id: "\(i)", prompt: prompt, sampling: sampling, maxTokens: 20, ignoreEndOfText: true))
        }
        for stream in streams { #expect(await collect(stream).ids == reference.ids) }
        #expect(tight.statistics.preemptions > 0)
        await tight.shutdown()
    }

    /// On a runner that samples where its logits are, sampled rows go to it as SamplingRows: the
    /// tokens are ThresholdSampling's draws from each request's own generator (so a seed
    /// reproduces them), and a request for top-n log-probabilities still gets the logits path.
    @Test func sampledRowsGoToADeviceSamplingRunner() async throws {
        let runner = FakeRunner(samplesOnDevice: true)
        let engine = try makeEngine(runner)
        let sampling = SamplingParameters(temperature: 0.9, topK: 20, topP: 0.9, presencePenalty: 0.5, seed: 7)
        let prompt: [Int32] = [3, 1, 4, 1, 5]
        let result = await collect(try engine.generate(GenerationRequest(
            id: "d", prompt: prompt, sampling: sampling, maxTokens: 12, ignoreEndOfText: true, topLogprobs: 0)))
        var sampler = Sampler(sampling)
        var context = prompt
        for token in result.tokens {
            let row = sampler.deviceRow(history: context, vocabulary: FakeModel.vocabulary, wantsLogprob: true)
            let expected = ThresholdSampling.sample(FakeModel.logits(after: context), row).token
            #expect(token.token == expected.token)
            #expect(abs((token.logprob?.logprob ?? .nan) - (expected.logprob ?? .infinity)) < 1e-6)
            context.append(token.token)
        }
        #expect(result.tokens.count == 12 && runner.deviceSampledSteps.withLock { $0 } == 12)

        let top = await collect(try engine.generate(GenerationRequest(
            id: "t", prompt: prompt, sampling: sampling, maxTokens: 3, ignoreEndOfText: true, topLogprobs: 2)))
        #expect(top.tokens.count == 3 && top.tokens.allSatisfy { $0.topLogprobs.count == 2 })
        #expect(runner.deviceSampledSteps.withLock { $0 } == 12)
        await engine.shutdown()
    }
}
