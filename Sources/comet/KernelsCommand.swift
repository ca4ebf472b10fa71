import ArgumentParser
import CUDA
import Kernels
import Quant

#if canImport(Glibc)
import Glibc
#endif

struct Kernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or compile the CUDA kernels embedded in this binary.",
        subcommands: [List.self, Compile.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the embedded kernel sources.")

        func run() {
            for source in KernelSource.embedded {
                let hash = SHA256.hex(source.text).prefix(12)
                print("\(source.name)  \(source.text.utf8.count) bytes  sha256 \(hash)")
            }
        }
    }

    struct Compile: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compile every kernel source with NVRTC for each target (needs no GPU).",
            discussion: "Fails on the first error and prints NVRTC's log with file and line. CI runs this for sm_90a, sm_80, sm_86 and sm_89.")

        @Option(name: .customLong("arch"), help: "Target architecture(s), e.g. sm_90a, sm_80, sm_89. Repeatable.")
        var architectures: [String] = ["sm_90a", "sm_80", "sm_86", "sm_89"]

        @Flag(help: "Compile even when the cache has the cubin.")
        var force = false

        @Flag(help: "Print ptxas's resource report (registers, shared memory, spills) for every kernel.")
        var resources = false

        @OptionGroup var gpu: GPUOptions

        func validate() throws {
            for arch in architectures where !isValidArchitecture(arch) {
                throw ValidationError("'\(arch)' is not a target like sm_80, sm_89 or sm_90a")
            }
        }

        func run() throws {
            let compiler: KernelCompiler
            do {
                let base = try gpu.makeCompiler()
                compiler = resources
                    ? KernelCompiler(nvrtc: base.nvrtc, cacheDirectory: base.cacheDirectory, extraOptions: ["--ptxas-options=-v"])
                    : base
            } catch {
                throw fail("\(error)")
            }
            print("NVRTC \(compiler.nvrtc.versionString) (\(compiler.nvrtc.libraryPath))")
            var failures = 0
            for arch in architectures {
                for unit in KernelSource.units {
                    let start = clock()
                    do {
                        let result = try compiler.compile(unit, arch: arch, useCache: !force)
                        let seconds = Double(clock() - start) / Double(CLOCKS_PER_SEC)
                        let origin = result.fromCache ? "cached" : "compiled in \(Int(seconds * 1000)) ms"
                        print("ok    \(arch)  \(unit.name)  \(result.cubin.count) bytes, \(origin)")
                        if !result.log.isEmpty { print(result.log) }
                    } catch {
                        failures += 1
                        print("FAIL  \(arch)  \(unit.name)\n\(error)")
                    }
                }
            }
            let total = architectures.count * KernelSource.units.count
            print("\(total - failures) compiled, \(failures) failed")
            if failures > 0 { throw ExitCode(1) }
        }
    }
}

/// `sm_` followed by two or three digits and an optional `a` (arch-specific) suffix.
func isValidArchitecture(_ arch: String) -> Bool {
    guard arch.hasPrefix("sm_") else { return false }
    var rest = arch.dropFirst(3)
    if rest.hasSuffix("a") || rest.hasSuffix("f") { rest = rest.dropLast() }
    return (2...3).contains(rest.count) && rest.allSatisfy(\.isNumber)
}
