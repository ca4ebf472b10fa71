import ArgumentParser
import CUDA
import FoundationEssentials
import Kernels

#if canImport(Glibc)
import Glibc
#endif

/// Options shared by every command that touches CUDA. The environment is read here, at the
/// edge, and only here.
struct GPUOptions: ParsableArguments {
    @Option(help: "NVRTC library file or folder (default: $COMET_NVRTC, CUDA_HOME, /usr/local/cuda, Python's NVIDIA wheels).")
    var nvrtc: String?

    @Option(help: "Folder for compiled kernels (default: $COMET_CACHE_DIR or ~/.cache/comet/kernels).")
    var cacheDir: String?

    @Flag(help: "Neither read nor write the kernel cache.")
    var noCache = false

    @Option(help: "GPU ordinal.")
    var device = 0

    // On by default: with kernels that do not trigger early (common.cuh) it made decode steps
    // 0-2% faster at B = 1-256 on an H100 (bench/results/h100-2026-12-07e.md, call 2).
    @Flag(inversion: .prefixedNo,
          help: "Launch kernels as programmatic dependents (Hopper: each kernel is launched while the one before it finishes).")
    var dependentLaunch = true

    var environment: [String: String] { ProcessInfo.processInfo.environment }

    var librarySearch: LibrarySearch {
        var search = LibrarySearch.standard(environment: environment)
        if let nvrtc { search.explicitPaths.insert(nvrtc, at: 0) }
        return search
    }

    var cacheDirectory: String? {
        noCache ? nil : (cacheDir ?? KernelCompiler.defaultCacheDirectory(environment: environment))
    }

    func makeCompiler() throws -> KernelCompiler {
        KernelCompiler(nvrtc: try NVRTC.load(search: librarySearch), cacheDirectory: cacheDirectory)
    }

    /// The GPU's kernel library: driver, device, primary context and compiler together.
    /// `dependentLaunch: false` overrides `--dependent-launch` (benchmarks of one kernel against a library's).
    func makeLibrary(dependentLaunch: Bool = true) throws -> KernelLibrary {
        try makeLibraries(count: 1, dependentLaunch: dependentLaunch)[0]
    }

    /// Kernel libraries of `count` GPUs, ordinals `device ..< device + count` (tensor parallelism),
    /// sharing one compiler.
    func makeLibraries(count: Int, dependentLaunch: Bool = true) throws -> [KernelLibrary] {
        let driver = try CUDADriver.load(search: librarySearch)
        let available = try driver.deviceCount()
        guard device >= 0, device + count <= available else {
            throw CUDAError.invalidArgument(
                "\(count) GPU\(count == 1 ? "" : "s") from ordinal \(device) asked for, the driver sees \(available)")
        }
        let compiler = try makeCompiler()
        return try (device..<(device + count)).map {
            KernelLibrary(context: try driver.device($0).makeContext(), compiler: compiler, dependentLaunch: dependentLaunch && self.dependentLaunch)
        }
    }

    /// NCCL, for tensor parallelism.
    func loadNCCL() throws -> NCCL { try NCCL.load(search: librarySearch) }
}

/// Prints `error` to stderr and exits with status 1: the one way commands report failure.
func fail(_ message: String) -> ExitCode {
    var stderr = StandardError()
    print("error: \(message)", to: &stderr)
    return ExitCode(1)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        // fd 2 directly: Glibc's `stderr` global is not concurrency-safe in Swift 6.
        _ = string.utf8CString.withUnsafeBufferPointer {  Glibc.write(2, $0.baseAddress, $0.count - 1) }
    }
}
