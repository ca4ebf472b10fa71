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

    /// The kernels of a source that do not begin with `begin_dependent_work();`: that call must
    /// come in the body before any `return`, or a dependent launch could let the grid finish
    /// before the one it depends on (KernelFunction.dependentLaunch).
    static func kernelsNotWaiting(in text: String) -> [String] {
        var missing: [String] = []
        var rest = Substring(text)
        while let global = rest.range(of: "__global__") {
            let header = rest[global.upperBound...]
            guard let open = header.firstIndex(of: "{") else { break }
            let name = header[..<open].split(separator: "(").first?.split(separator: " ").last.map(String.init) ?? "?"
            var depth = 0, end = open
            for index in header[open...].indices {
                if header[index] == "{" { depth += 1 } else if header[index] == "}" { depth -= 1 }
                if depth == 0 { end = index; break }
            }
            let body = header[open...end]
            let wait = body.range(of: "begin_dependent_work();")
            if wait == nil || body[..<wait!.lowerBound].contains("return") { missing.append(name) }
            rest = header[end...]
        }
        return missing
    }

    @Test func everyKernelBeginsWithTheDependentLaunchWait() {
        for unit in KernelSource.units {
            #expect(Self.kernelsNotWaiting(in: unit.text).isEmpty, "\(unit.name): \(Self.kernelsNotWaiting(in: unit.text))")
        }
        let sample = """
            extern "C" __global__ void fine(int* x) { begin_dependent_work(); if (x) { x[0] = 1; } }
            extern "C" __global__ void late(int* x) { if (!x) return; begin_dependent_work(); }
            extern "C" __global__ void never(int* x) { x[0] = 2; }
            """
        #expect(Self.kernelsNotWaiting(in: sample) == ["late", "never"])
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
