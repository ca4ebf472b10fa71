import CPUBackend
import Foundation
import Model
import Testing

/// The real model, SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-test-assets.sh), as ModelTests find it.
enum TestModel {
    static let path: String? = {
        let env = ProcessInfo.processInfo.environment
        let folder = env["COMET_ASSETS"] ?? (NSHomeDirectory() + "/.cache/comet/assets")
        let path = env["COMET_TEST_GGUF"] ?? folder + "/SmolLM2-135M-Instruct.Q4_1.gguf"
        if FileManager.default.fileExists(atPath: path) { return path }
        // In CI (COMET_REQUIRE_ASSETS=1) a missing model must fail, not skip: hand the path on anyway.
        return env["COMET_REQUIRE_ASSETS"] == "1" ? path : nil
    }()

    static let missing: Comment =
        "SmolLM2 GGUF not found (set COMET_TEST_GGUF or run scripts/fetch-test-assets.sh)"

    /// Loaded once for every test. A small chunk size, so that the 15- and 17-token golden prompts run
    /// in several chunks and the chunked path is checked too. `nonisolated(unsafe)`: a model runs one
    /// forward call at a time, and the only suite that uses it is `.serialized`.
    nonisolated(unsafe) static let shared: Result<(model: LlamaCPUModel, tokenizer: any Tokenizer), any Error> = Result {
        let gguf = try GGUFFile(path: path ?? "")
        return (try LlamaCPUModel(gguf: gguf, maxBatchTokens: 8), try makeTokenizer(gguf: gguf))
    }

    static func load() throws -> (model: LlamaCPUModel, tokenizer: any Tokenizer) {
        try shared.get()
    }
}

/// The fixtures of scripts/make_golden_logits.py.
struct LogitsGolden: Decodable {
    struct Case: Decodable {
        var text: String
        var ids: [Int32]
        /// [id, logit] of the 20 largest last-position logits.
        var top: [[Double]]
        /// [id, logit] at 64 fixed ids.
        var fixed: [[Double]]
        var norm: Double
        var sum: Double
        var absSum: Double
        var greedy: [Int32]
        var greedyMargins: [Double]
        var llamaCpp: LlamaCpp?
    }

    struct LlamaCpp: Decodable {
        var tokens: [Int32]
        /// Logprob gap between llama.cpp's first and second choice at each step.
        var margins: [Double]
    }

    var greedySteps: Int
    var cases: [Case]

    static func load() throws -> LogitsGolden {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/smollm2_logits.json")
        return try JSONDecoder().decode(LogitsGolden.self, from: Data(contentsOf: url))
    }
}
