import CPUBackend
import Engine
import Foundation
import Model
import Sampling
import Testing

/// The real model, SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-test-assets.sh), found as the
/// other suites find it; with COMET_REQUIRE_ASSETS=1 a missing file fails instead of skipping.
enum SmolLM2 {
    static let path: String? = {
        let env = ProcessInfo.processInfo.environment
        let folder = env["COMET_ASSETS"] ?? (NSHomeDirectory() + "/.cache/comet/assets")
        let path = env["COMET_TEST_GGUF"] ?? folder + "/SmolLM2-135M-Instruct.Q4_1.gguf"
        if FileManager.default.fileExists(atPath: path) { return path }
        return env["COMET_REQUIRE_ASSETS"] == "1" ? path : nil
    }()

    static let missing: Comment = "SmolLM2 GGUF not found (set COMET_TEST_GGUF or run scripts/fetch-test-assets.sh)"

    /// Loaded once. `nonisolated(unsafe)`: one engine (or the test itself) runs it at a time; the
    /// suite is serialized and each test shuts its engine down before it calls the model directly.
    nonisolated(unsafe) static let shared: Result<(model: LlamaCPUModel, tokenizer: any Tokenizer, template: ChatTemplate), any Error> = Result {
        let gguf = try GGUFFile(path: path ?? "")
        return (try LlamaCPUModel(gguf: gguf, maxBatchTokens: 16), try makeTokenizer(gguf: gguf), try ChatTemplate(gguf: gguf))
    }
}

/// `LLMEngine` on `CPUModelRunner` gives exactly the greedy tokens of direct `LlamaCPUModel.forward`
/// calls on a contiguous cache: with several prompts at once (chunked prefill mixed with decode),
/// with a cache so small that requests are preempted and recomputed, and with a shared prefix served
/// from the prefix cache. A debug build runs a few rows a second, so prompts and outputs are short.
@Suite(.enabled(if: SmolLM2.path != nil, SmolLM2.missing), .serialized)
struct SmolLM2EngineTests {
    static let outputTokens = 4

    /// A shared 8-token beginning (two blocks of 4), then different endings.
    static func prompts(_ tokenizer: any Tokenizer) -> [[Int32]] {
        let prefix = Array(tokenizer.encode("The capital of France is Paris. The capital", addBOS: false).prefix(8))
        return [" of Italy is", " of Spain", " city"].map { prefix + tokenizer.encode($0, addBOS: false) }
    }

    /// `directGreedy` of each of `prompts(_:)`, computed once (a debug build takes minutes).
    /// `nonisolated(unsafe)`: only the serialized tests of this suite touch it.
    nonisolated(unsafe) static var reference: [[Int32]]?

    static func directReference() throws -> [[Int32]] {
        if let reference { return reference }
        let (model, tokenizer, _) = try SmolLM2.shared.get()
        let computed = try prompts(tokenizer).map { try directGreedy(model, $0, count: outputTokens) }
        reference = computed
        return computed
    }

    /// Greedy decoding with one forward call per token on a contiguous KV cache.
    static func directGreedy(_ model: LlamaCPUModel, _ prompt: [Int32], count: Int) throws -> [Int32] {
        let cache = model.makeCache(capacity: prompt.count + count)
        var logits: [Float] = []
        try model.forward(prompt, at: 0, cache: cache, logits: &logits)
        var output: [Int32] = []
        while true {
            output.append(Sampler.argmax(logits))
            if output.count == count { return output }
            try model.forward([output.last!], at: prompt.count + output.count - 1, cache: cache, logits: &logits)
        }
    }

    /// Runs every prompt at once on a fresh engine; returns the token ids and the usage of each.
    static func serve(
        _ prompts: [[Int32]], blocks: Int, repeatFirst: Bool = false, prefixCaching: Bool = true
    ) async throws -> (outputs: [[Int32]], usages: [Usage], statistics: EngineStatistics) {
        let (model, tokenizer, template) = try SmolLM2.shared.get()
        let runner = try CPUModelRunner(model: model, kvBlockSize: 4, kvBlockCount: blocks, maxStepTokens: 16, maxStepSequences: 8)
        let engine = try LLMEngine(runner: runner, tokenizer: tokenizer, chatTemplate: template,
                                   configuration: EngineConfiguration(modelName: "smollm2", prefixCaching: prefixCaching))
        func request(_ i: Int, _ prompt: [Int32]) throws -> AsyncThrowingStream<GenerationEvent, any Error> {
            try engine.generate(GenerationRequest(id: "\(i)", prompt: prompt, maxTokens: outputTokens, ignoreEndOfText: true))
        }
        var results = try await withThrowingTaskGroup(of: (Int, Collected).self) { group in
            for (i, prompt) in prompts.enumerated() {
                let stream = try request(i, prompt)
                group.addTask { (i, await collect(stream)) }
            }
            return try await group.reduce(into: [Collected](repeating: Collected(), count: prompts.count)) { $0[$1.0] = $1.1 }
        }
        if repeatFirst { results.append(await collect(try request(prompts.count, prompts[0]))) }
        for result in results {
            #expect(result.error == nil, "\(String(describing: result.error))")
            #expect(result.finish?.reason == .length)
        }
        let statistics = engine.statistics
        await engine.shutdown()
        return (results.map(\.ids), results.compactMap { $0.finish?.usage }, statistics)
    }

    @Test func concurrentPromptsGiveTheDirectGreedyTokens() async throws {
        let (_, tokenizer, _) = try SmolLM2.shared.get()
        let prompts = Self.prompts(tokenizer)
        let served = try await Self.serve(prompts, blocks: 64, repeatFirst: true)
        #expect(Array(served.outputs.prefix(prompts.count)) == (try Self.directReference()))
        // The repeated prompt: the same tokens, its whole blocks before the last token from the cache.
        #expect(served.outputs[prompts.count] == served.outputs[0])
        let cached = served.usages[prompts.count].cachedPromptTokens
        #expect(cached == (prompts[0].count - 1) / 4 * 4)
        #expect(served.statistics.prefixCacheHitTokens >= cached && served.statistics.kvBlocksInUse == 0)
    }

    @Test func aCacheTooSmallForAllPreemptsAndStillGivesTheSameTokens() async throws {
        let (_, tokenizer, _) = try SmolLM2.shared.get()
        let prompts = Self.prompts(tokenizer)
        // The first two requests fill the 6 blocks of 4 positions once their prompts ran; the first one's
        // second decode needs a seventh, so the second request is preempted and recomputed later.
        // Without prefix caching: a request that arrives after the first prompt ran (a loaded machine)
        // would share its two prefix blocks, and then all fit without a preemption.
        let served = try await Self.serve(prompts, blocks: 6, prefixCaching: false)
        #expect(served.statistics.preemptions > 0)
        #expect(served.statistics.kvBlocksInUse == 0)
        #expect(served.outputs == (try Self.directReference()))
    }
}
