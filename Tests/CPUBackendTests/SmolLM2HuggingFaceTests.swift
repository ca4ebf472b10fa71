import CPUBackend
import Foundation
import Model
import Testing

/// SmolLM2 exported to a Hugging Face folder by scripts/make_hf_fixture.py (F32 safetensors in two shards,
/// q/k un-permuted to rotate-half order, tokenizer.json from the GGUF vocab) runs like the GGUF itself.
///
/// Rule: on the first golden prompt followed by its first 8 greedy tokens (teacher-forced, one batch),
/// every logit at every position is within 1e-3 * max(1, |gguf|) of the GGUF path's, the argmax at
/// each of the 8 greedy steps is the same, and those are the golden (numpy) greedy tokens. The weights are the same
/// fp32 numbers; only the order of the q/k channels (and so the rounding of q·k) differs.
///
/// An extension of `SmolLM2ForwardTests` so that it runs serialized with that suite: both use the one
/// shared GGUF model, whose scratch serves one forward call at a time.
extension SmolLM2ForwardTests {
    @Test(.enabled(if: HuggingFaceFixture.path != nil, HuggingFaceFixture.missing))
    func huggingFaceFolderGivesTheSameLogitsAndGreedyTokensAsTheGGUF() throws {
        let source = try openModel(try #require(HuggingFaceFixture.path))
        guard case .huggingFace = source.format else { Issue.record("opened as \(source.format)"); return }
        let gguf = try TestModel.load()
        var expectedConfig = gguf.model.config
        expectedConfig.ropeConvention = .halves
        #expect(source.config == expectedConfig)

        let golden = try LogitsGolden.load().cases[0]
        let tokenizer = try source.tokenizer()
        #expect(tokenizer.encode(golden.text, addBOS: false, parseSpecial: true) == golden.ids)

        let model = try LlamaCPUModel(weights: source.weights, maxBatchTokens: 8)
        let steps = 8
        let tokens = golden.ids + golden.greedy.prefix(steps - 1)
        let vocab = model.config.vocabularySize
        var ours: [Float] = [], theirs: [Float] = []
        try model.forward(tokens, at: 0, cache: model.makeCache(capacity: tokens.count), logits: &ours, for: .all)
        try gguf.model.forward(tokens, at: 0, cache: gguf.model.makeCache(capacity: tokens.count), logits: &theirs, for: .all)
        #expect(ours.count == theirs.count)
        let worst = zip(ours, theirs).map { abs(Double($0) - Double($1)) / max(1, abs(Double($1))) }.max() ?? .infinity
        #expect(worst <= 1e-3, "worst relative logit difference HF vs GGUF: \(worst)")

        let greedy = (0..<steps).map { argmax(ours[((golden.ids.count - 1 + $0) * vocab)..<((golden.ids.count + $0) * vocab)]) }
        let ggufGreedy = (0..<steps).map { argmax(theirs[((golden.ids.count - 1 + $0) * vocab)..<((golden.ids.count + $0) * vocab)]) }
        #expect(greedy == ggufGreedy)
        #expect(greedy == Array(golden.greedy.prefix(steps)))
    }

    @Test(.enabled(if: HuggingFaceFixture.path != nil, HuggingFaceFixture.missing))
    func huggingFaceFolderHasItsChatTemplateAndSpecialTokens() throws {
        let source = try openModel(try #require(HuggingFaceFixture.path))
        let template = try source.chatTemplate()
        #expect(template.name == "chatml")
        let tokenizer = try source.tokenizer()
        #expect(tokenizer.bosTokenID == 1 && tokenizer.eosTokenID == 2)
        #expect(tokenizer.tokenID(for: template.endOfTurn) == 2)
        #expect(tokenizer.isControl(1) && !tokenizer.isControl(100))
    }
}

/// The folder of scripts/make_hf_fixture.py: $COMET_TEST_HF, else $COMET_ASSETS/smollm2-hf.
enum HuggingFaceFixture {
    static let path: String? = {
        let env = ProcessInfo.processInfo.environment
        let folder = env["COMET_ASSETS"] ?? (NSHomeDirectory() + "/.cache/comet/assets")
        let path = env["COMET_TEST_HF"] ?? folder + "/smollm2-hf"
        if FileManager.default.fileExists(atPath: path + "/config.json") { return path }
        // In CI (COMET_REQUIRE_ASSETS=1) a missing folder must fail, not skip.
        return env["COMET_REQUIRE_ASSETS"] == "1" ? path : nil
    }()

    static let missing: Comment = "SmolLM2 HF folder not found (run scripts/make_hf_fixture.py, or set COMET_TEST_HF)"
}
