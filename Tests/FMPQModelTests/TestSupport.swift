import CPUBackend
import Foundation
import Model
import Testing

/// The real model (scripts/fetch-test-assets.sh) and the calibration text (scripts/fetch-eval-text.sh).
enum Assets {
    static let folder: String = {
        let env = ProcessInfo.processInfo.environment
        return env["COMET_ASSETS"] ?? (NSHomeDirectory() + "/.cache/comet/assets")
    }()
    static let gguf: String? = {
        let path = ProcessInfo.processInfo.environment["COMET_TEST_GGUF"] ?? folder + "/SmolLM2-135M-Instruct.Q4_1.gguf"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()
    static let missing: Comment = "SmolLM2 GGUF not found (set COMET_TEST_GGUF or run scripts/fetch-test-assets.sh)"

    /// A short fixed calibration text, so tests need only the model file.
    static let text = "In the beginning, God created the heavens and the earth. The earth was formless and empty. "
        + "Darkness was on the surface of the deep and God's Spirit was hovering over the surface of the waters. "
        + "God said, \"Let there be light,\" and there was light. God saw the light, and saw that it was good."

    nonisolated(unsafe) static let shared: Result<(model: LlamaCPUModel, tokenizer: any Tokenizer), any Error> = Result {
        let file = try GGUFFile(path: Assets.gguf ?? "")
        return (try LlamaCPUModel(gguf: file, maxBatchTokens: 32), try makeTokenizer(gguf: file))
    }
}
