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
        for field in ["CPU:", "CUDA driver:", "NVRTC:", "Kernel cache:", "Kernels:"] {
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
}
