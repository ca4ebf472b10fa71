import CUDA
import Foundation
@testable import Kernels
import Testing

@Suite struct EmbeddedSourcesTests {
    /// Every file in Sources/Kernels/cuda is embedded, byte for byte.
    @Test func everyCUDAFileIsEmbedded() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/Kernels/cuda").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .filter { $0.hasSuffix(".cu") || $0.hasSuffix(".cuh") }.sorted()
        #expect(files == KernelSource.embedded.map(\.name))
        for file in files {
            let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            #expect(KernelSource.named(file)?.text == text, "\(file) differs from its embedded copy")
        }
        #expect(KernelSource.units.allSatisfy { !$0.isHeader })
        #expect(!KernelSource.units.isEmpty && !KernelSource.headers.isEmpty)
    }
}

@Suite struct KernelCompilerTests {
    func makeCompiler(cache: String?) throws -> KernelCompiler? {
        guard let nvrtc = try loadNVRTC() else { return nil }
        return KernelCompiler(nvrtc: nvrtc, cacheDirectory: cache)
    }

    func temporaryFolder() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("comet-kernels-\(UUID())").path
    }

    @Test func cacheKeysSeparateArchitecturesAndSources() throws {
        guard let compiler = try makeCompiler(cache: nil) else { return }
        let copy = KernelSource.named("copy.cu")!, gemm = KernelSource.named("gemm_s8_mma.cu")!
        #expect(compiler.cacheKey(for: copy, arch: "sm_90a") == compiler.cacheKey(for: copy, arch: "sm_90a"))
        #expect(compiler.cacheKey(for: copy, arch: "sm_90a") != compiler.cacheKey(for: copy, arch: "sm_80"))
        #expect(compiler.cacheKey(for: copy, arch: "sm_90a") != compiler.cacheKey(for: gemm, arch: "sm_90a"))
        let edited = KernelSource(name: copy.name, text: copy.text + "\n// edited\n")
        #expect(compiler.cacheKey(for: copy, arch: "sm_80") != compiler.cacheKey(for: edited, arch: "sm_80"))
    }

    /// The CI gate: every embedded kernel compiles for Hopper, Ampere and Ada.
    @Test(arguments: ["sm_90a", "sm_80", "sm_89"])
    func everyKernelCompiles(arch: String) throws {
        guard let compiler = try makeCompiler(cache: nil) else { return }
        for unit in KernelSource.units {
            let result = try compiler.compile(unit, arch: arch)
            #expect(!result.fromCache && result.cubin.count > 1000, "\(unit.name) for \(arch)")
        }
    }

    @Test func cacheHitsAndRecoversFromACorruptEntry() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        guard let compiler = try makeCompiler(cache: folder) else { return }
        let unit = KernelSource.named("copy.cu")!
        let first = try compiler.compile(unit, arch: "sm_80")
        let second = try compiler.compile(unit, arch: "sm_80")
        #expect(!first.fromCache && second.fromCache && first.cubin == second.cubin)
        // Only finished cubins are left behind: no temporary files.
        let entries = try FileManager.default.contentsOfDirectory(atPath: folder)
        #expect(entries.count == 1 && entries[0].hasPrefix("copy-sm_80-") && entries[0].hasSuffix(".cubin"))
        // A torn or foreign file is compiled again and replaced.
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: "\(folder)/\(entries[0])"))
        let third = try compiler.compile(unit, arch: "sm_80")
        #expect(!third.fromCache && third.cubin == first.cubin)
        #expect(try compiler.compile(unit, arch: "sm_80").fromCache)
    }
}

/// NVRTC, or nil where it is absent: then the tests that need it pass vacuously, unless
/// COMET_REQUIRE_NVRTC=1 (set by scripts/test.sh, which installs it) makes its absence a failure.
func loadNVRTC() throws -> NVRTC? {
    let environment = ProcessInfo.processInfo.environment
    do {
        return try NVRTC.load(search: .standard(environment: environment))
    } catch {
        if environment["COMET_REQUIRE_NVRTC"] == "1" { throw error }
        print("NVRTC not found; skipping: \(error)")
        return nil
    }
}
