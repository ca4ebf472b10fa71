import CUDA
import CPUReference
import Kernels

/// What every GPU check gets: the device, its kernels, a stream, and a generator seeded
/// freshly for each run (the runner prints the seed so that a failure can be replayed).
public struct GPUCheckEnvironment {
    public let library: KernelLibrary
    public let stream: CUDAStream
    public var random: SplitMix64
    /// Where cuBLASLt is looked up (checks of the model runner, whose LM head uses it).
    public let librarySearch: LibrarySearch
    /// A GGUF model for the checks on a real model (skipped when nil).
    public let modelPath: String?
    public var context: CUDAContext { library.context }

    /// GPUs the driver sees.
    public var deviceCount: Int { (try? library.context.device.driver.deviceCount()) ?? 1 }

    /// Kernel libraries of `count` GPUs from this one on (tensor-parallel checks), sharing its compiler.
    public func libraries(_ count: Int) throws -> [KernelLibrary] {
        let first = context.device.ordinal, driver = context.device.driver
        guard first + count <= deviceCount else { throw CheckSkipped("\(count) GPUs needed, \(deviceCount - first) available") }
        return try (first..<(first + count)).map {
            $0 == first ? library : KernelLibrary(context: try driver.device($0).makeContext(), compiler: library.compiler, dependentLaunch: library.dependentLaunch)
        }
    }

    public init(library: KernelLibrary, stream: CUDAStream, seed: UInt64, librarySearch: LibrarySearch = LibrarySearch(),
                modelPath: String? = nil) {
        self.library = library
        self.stream = stream
        self.random = SplitMix64(seed: seed)
        self.librarySearch = librarySearch
        self.modelPath = modelPath
    }
}

/// A mismatch between a kernel and its reference.
public struct CheckFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One named GPU check. Its body throws on any mismatch and returns a one-line summary of
/// what it covered.
public struct GPUCheck: Sendable {
    public let name: String
    let body: @Sendable (inout GPUCheckEnvironment) throws -> String

    public init(_ name: String, _ body: @escaping @Sendable (inout GPUCheckEnvironment) throws -> String) {
        self.name = name
        self.body = body
    }

    /// Every check, in a fixed order.
    public static let all: [GPUCheck] = DriverChecks.all + CopyChecks.all + Int8GemmChecks.all + W4AxGemmChecks.all + FMPQQuantizeChecks.all
        + DecodeAttentionChecks.all + RoPEKVWriteChecks.all + LayerOpsChecks.all + SamplingChecks.all + GPURunnerChecks.all
        + TensorParallelChecks.all

    /// Runs `checks` one after another; a failing or throwing check does not stop the rest.
    /// Prints `PASS`/`FAIL`/`SKIP` lines through `log`, and returns the counts.
    public static func run(
        _ checks: [GPUCheck], in environment: inout GPUCheckEnvironment, log: (String) -> Void
    ) -> (passed: Int, failed: Int, skipped: Int) {
        var passed = 0, failed = 0, skipped = 0
        for check in checks {
            do {
                let summary = try check.body(&environment)
                try environment.context.synchronize()  // surfaces asynchronous kernel faults here
                passed += 1
                log("PASS \(check.name): \(summary)")
            } catch let skip as CheckSkipped {
                skipped += 1
                log("SKIP \(check.name): \(skip.reason)")
            } catch {
                failed += 1
                log("FAIL \(check.name): \(error)")
            }
        }
        return (passed, failed, skipped)
    }
}

/// Thrown by a check that cannot run here (no model file, no wgmma): counted apart, never as a pass.
struct CheckSkipped: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Throws unless `actual` equals `expected` element for element, naming the first mismatch.
func expectEqual<T: Equatable>(_ actual: [T], _ expected: [T], _ what: String) throws {
    guard actual.count == expected.count else {
        throw CheckFailure("\(what): \(actual.count) elements, expected \(expected.count)")
    }
    var mismatches = 0
    var first: Int?
    for i in actual.indices where actual[i] != expected[i] {
        mismatches += 1
        if first == nil { first = i }
    }
    if let first {
        throw CheckFailure(
            "\(what): \(mismatches) of \(actual.count) elements differ; first at \(first): got \(actual[first]), expected \(expected[first])")
    }
}
