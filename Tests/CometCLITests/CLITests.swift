import Foundation
import Testing

/// Runs the built `comet` binary, which sits beside the test bundle.
func runComet(_ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let process = Process()
    process.executableURL = bundle.appendingPathComponent("comet")
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite struct CLITests {
    @Test func envExitsZeroAndReportsEverything() throws {
        let (status, output) = try runComet(["env"])
        #expect(status == 0, "\(output)")
        for field in ["CPU:", "CUDA driver:", "NVRTC:", "NCCL:", "Kernel cache:", "Kernels:"] {
            #expect(output.contains(field), "missing \(field) in:\n\(output)")
        }
        #expect(output.contains("copy.cu") && output.contains("gemm_s8_mma.cu"))
    }

    @Test func kernelsListNamesEverySource() throws {
        let (status, output) = try runComet(["kernels", "list"])
        #expect(status == 0)
        #expect(output.contains("common.cuh") && output.contains("copy.cu") && output.contains("sha256"))
    }

    @Test func aBadArchitectureIsRefusedClearly() throws {
        let (status, output) = try runComet(["kernels", "compile", "--arch", "hopper"])
        #expect(status != 0)
        #expect(output.contains("'hopper' is not a target like sm_80"))
    }

    @Test func aMissingNVRTCIsOneClearError() throws {
        let (status, output) = try runComet(
            ["kernels", "compile", "--arch", "sm_80", "--nvrtc", "/nonexistent/libnvrtc.so.13"],
            environment: ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "CUDA_HOME": "/nonexistent"])
        // Either this machine has a system NVRTC the loader finds, or the error says what was searched.
        if status != 0 {
            #expect(output.contains("error: NVRTC (libnvrtc.so) not found") && output.contains("/nonexistent/libnvrtc.so.13"))
        }
    }

    @Test func benchRejectsBadSizes() throws {
        let (status, output) = try runComet(["bench", "copy", "--mib", "0"])
        #expect(status != 0 && output.contains("--mib must be between"))
    }

    /// `bench gemm` takes only the small-M shapes that exist (W4AxGemm.SmallMTuning), and the
    /// dependent launch, on by default, can be turned off: the flag parses either way (an unknown
    /// one would fail before validation with another message).
    @Test func benchGemmValidatesSmallMShapesAndTakesTheDependentLaunchFlags() throws {
        let message = "--small-m-n-tiles is 1 or 2, --small-m-warps 4 or 8"
        for arguments in [["--small-m-n-tiles", "3"], ["--small-m-warps", "5"], ["--no-dependent-launch", "--small-m-n-tiles", "0"],
                          ["--dependent-launch", "--small-m-warps", "16"]] {
            let (status, output) = try runComet(["bench", "gemm"] + arguments)
            #expect(status != 0 && output.contains(message), "\(arguments): \(output)")
        }
    }

    @Test func serveAndBenchServeValidateTheirOptions() throws {
        for (arguments, message) in [
            (["serve", "--port", "70000"], "--port must be between 0 and 65535"),
            (["serve", "--max-body-bytes", "10"], "--max-body-bytes must be at least 1024"),
            (["serve", "--api-key", ""], "--api-key must not be empty"),
            (["serve", "--shutdown-grace=-1"], "--shutdown-grace must be at least 0 seconds"),
            (["bench", "serve", "--concurrency", "0"], "--concurrency must be between 1 and 4096"),
            (["bench", "serve", "--url", "localhost:8000"], "--url must start with http://"),
            (["bench", "serve", "--output-len", "0"], "--input-len and --output-len must be at least 1"),
            (["serve", "--tensor-parallel", "2"], "--tensor-parallel needs --backend gpu"),
            (["serve", "--backend", "gpu", "--tensor-parallel", "0"], "--tensor-parallel must be from 1 to 64"),
            (["quantize", "--out", "/nonexistent/x", "--tensor-parallel", "0"], "--tensor-parallel must be from 1 to 64"),
            (["bench", "decode", "--profile", "--tensor-parallel", "2"], "--profile runs on one GPU"),
            (["quantize", "--out", "/nonexistent/x", "--int8-share-of", "gate=1"], "--int8-share-of"),
            (["quantize", "--out", "/nonexistent/x", "--int8-share-of", "gate_up=1.5"], "--int8-share-of"),
            (["quantize", "--out", "/nonexistent/x", "--int8-share-of", "down=1", "--int8-share-of", "down=0"],
             "--int8-share-of names a linear kind twice"),
        ] {
            let (status, output) = try runComet(arguments)
            #expect(status != 0 && output.contains(message), "\(arguments): \(output)")
        }
    }

    @Test func benchServeWithNoServerIsOneErrorLine() throws {
        let (status, output) = try runComet(["bench", "serve", "--url", "http://127.0.0.1:9", "--requests", "1"])
        #expect(status == 1)
        #expect(output.hasPrefix("error: bench serve: ") && output.split(separator: "\n").count == 1, "\(output)")
    }
}

/// The model commands on the default model (scripts/fetch-test-assets.sh puts it where `comet` looks).
@Suite struct ModelCommandTests {
    static let assets = ProcessInfo.processInfo.environment["COMET_ASSETS"]
        ?? (NSHomeDirectory() + "/.cache/comet/assets")
    static let hasModel = FileManager.default.fileExists(atPath: assets + "/SmolLM2-135M-Instruct.Q4_1.gguf")
        || ProcessInfo.processInfo.environment["COMET_REQUIRE_ASSETS"] == "1"

    @Test(.enabled(if: hasModel, "run scripts/fetch-test-assets.sh"))
    func tokenizeAndDetokenizeRoundTrip() throws {
        let (status, output) = try runComet(["tokenize", "The capital of France is"])
        #expect(status == 0, "\(output)")
        #expect(output == "[504, 3575, 282, 4649, 314]\n")
        let back = try runComet(["detokenize", "[504, 3575, 282, 4649, 314]"])
        #expect(back.status == 0 && back.output == "The capital of France is\n")
    }

    /// Greedy generation streams the golden continuation (Tests/CPUBackendTests/Fixtures) and reports speed.
    @Test(.enabled(if: hasModel, "run scripts/fetch-test-assets.sh"))
    func generateGreedy() throws {
        let (status, output) = try runComet(["generate", "--temperature", "0", "--max-tokens", "2", "The capital of France is"])
        #expect(status == 0, "\(output)")
        #expect(output.hasPrefix(" Paris.\n"), "\(output)")
        #expect(output.contains("2 tokens in") && output.contains("tokens/s"), "\(output)")
    }

    /// `--model` takes a Hugging Face folder as well (scripts/make_hf_fixture.py exports SmolLM2 to one).
    @Test(.enabled(if: FileManager.default.fileExists(atPath: assets + "/smollm2-hf/config.json")
                   || ProcessInfo.processInfo.environment["COMET_REQUIRE_ASSETS"] == "1", "run scripts/make_hf_fixture.py"))
    func aHuggingFaceFolderIsAModel() throws {
        let folder = Self.assets + "/smollm2-hf"
        let (status, output) = try runComet(["tokenize", "--model", folder, "The capital of France is"])
        #expect(status == 0 && output == "[504, 3575, 282, 4649, 314]\n", "\(output)")
        let generated = try runComet(["generate", "--model", folder, "--temperature", "0", "--max-tokens", "2", "The capital of France is"])
        #expect(generated.status == 0 && generated.output.hasPrefix(" Paris.\n"), "\(generated.output)")
    }

    @Test func aBrokenHuggingFaceFolderIsOneErrorLine() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString)-hf").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (status, output) = try runComet(["tokenize", "--model", folder, "hi"])
        #expect(status == 1)
        #expect(output == "error: \(folder): missing file '\(folder)/config.json': a Hugging Face model folder needs its config.json\n", "\(output)")
    }

    @Test func aMissingDefaultModelSaysToPull() throws {
        let (status, output) = try runComet(["generate", "hi"], environment: ["COMET_ASSETS": "/nonexistent", "HOME": "/nonexistent"])
        #expect(status == 1)
        #expect(output == "error: the default model is not downloaded yet (/nonexistent/SmolLM2-135M-Instruct.Q4_1.gguf); run `comet pull` first, or pass --model FILE\n")
    }

    @Test func aFileThatIsNotGGUFIsOneErrorLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString).gguf").path
        _ = FileManager.default.createFile(atPath: path, contents: Data("hello".utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (status, output) = try runComet(["generate", "--model", path, "hi"])
        #expect(status == 1)
        #expect(output.hasPrefix("error: \(path): not a GGUF file") && output.split(separator: "\n").count == 1, "\(output)")
    }
}
