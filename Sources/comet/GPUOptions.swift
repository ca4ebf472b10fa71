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
    func makeLibrary() throws -> KernelLibrary {
        let driver = try CUDADriver.load(search: librarySearch)
        let context = try driver.device(device).makeContext()
        return KernelLibrary(context: context, compiler: try makeCompiler())
    }
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
