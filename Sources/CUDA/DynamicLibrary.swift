#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A shared library opened with `dlopen`, closed when released.
///
/// CUDA is loaded at run time so that building comet needs no CUDA installation and a
/// machine without a GPU still runs the CPU backend.
final class DynamicLibrary: @unchecked Sendable {
    let path: String
    private let handle: UnsafeMutableRawPointer

    /// Opens `path` (a file path or a bare soname resolved by the dynamic loader).
    /// Returns nil with the loader's message when it cannot be opened.
    static func open(_ path: String) -> Result<DynamicLibrary, CUDAError> {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let message = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            return .failure(.libraryNotLoaded(path: path, reason: message))
        }
        return .success(DynamicLibrary(path: path, handle: handle))
    }

    private init(path: String, handle: UnsafeMutableRawPointer) {
        self.path = path
        self.handle = handle
    }

    deinit { dlclose(handle) }

    /// The first of `names` that the library exports, cast to the C function type `T`.
    /// Several names let a binding prefer a newer versioned symbol (`cuEventElapsedTime_v2`).
    func function<T>(_ names: String..., as type: T.Type = T.self) throws -> T {
        for name in names {
            if let symbol = dlsym(handle, name) {
                return unsafeBitCast(symbol, to: T.self)
            }
        }
        throw CUDAError.symbolMissing(library: path, symbol: names.joined(separator: " or "))
    }
}
