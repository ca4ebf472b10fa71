/// Every failure of the CUDA layer. Messages name the call and, for driver errors, the
/// CUresult (`CUDA_ERROR_OUT_OF_MEMORY`), so that a log line alone says what went wrong.
public enum CUDAError: Error, CustomStringConvertible, Sendable, Equatable {
    /// `dlopen` failed for this path.
    case libraryNotLoaded(path: String, reason: String)
    /// None of the candidate locations held the library.
    case libraryNotFound(name: String, searched: [String])
    /// The library lacks a symbol we bind (too old a driver or toolkit).
    case symbolMissing(library: String, symbol: String)
    /// A driver API call returned an error.
    case driver(call: String, code: Int32, name: String, message: String)
    /// An NVRTC call (not the compilation itself) failed.
    case nvrtc(call: String, code: Int32, message: String)
    /// NVRTC rejected a kernel source; `log` holds its diagnostics with file and line.
    case compilation(source: String, arch: String, log: String)
    /// The driver works but sees no device.
    case noDevice
    /// A request that cannot be satisfied, e.g. a copy larger than its buffer.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .libraryNotLoaded(path, reason):
            return "cannot load \(path): \(reason)"
        case let .libraryNotFound(name, searched):
            return "\(name) not found; searched: \(searched.joined(separator: ", "))"
        case let .symbolMissing(library, symbol):
            return "\(library) does not export \(symbol) (driver or toolkit too old?)"
        case let .driver(call, code, name, message):
            return "\(call) failed: \(name) (\(code)): \(message)"
        case let .nvrtc(call, code, message):
            return "\(call) failed: \(message) (\(code))"
        case let .compilation(source, arch, log):
            return "NVRTC could not compile \(source) for \(arch):\n\(log)"
        case .noDevice:
            return "the CUDA driver found no GPU"
        case let .invalidArgument(message):
            return message
        }
    }
}
