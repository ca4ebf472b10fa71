#if canImport(Glibc)
import Glibc
#endif

/// The NVIDIA run-time compiler, loaded from libnvrtc. Needs no GPU: CI uses it to compile
/// every kernel for every target architecture.
public final class NVRTC: @unchecked Sendable {
    private typealias Program = OpaquePointer
    private let library: DynamicLibrary
    /// libnvrtc-builtins, loaded from NVRTC's own folder before NVRTC asks for it by soname:
    /// the pip wheel's folder is not on the loader path, and NVRTC fails without it.
    private let builtins: DynamicLibrary?
    private let nvrtcVersion: @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    private let nvrtcGetErrorString: @convention(c) (Int32) -> UnsafePointer<CChar>?
    private let nvrtcCreateProgram: @convention(c) (
        UnsafeMutablePointer<Program?>, UnsafePointer<CChar>, UnsafePointer<CChar>, Int32,
        UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?
    ) -> Int32
    private let nvrtcCompileProgram: @convention(c) (Program?, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    private let nvrtcGetProgramLogSize: @convention(c) (Program?, UnsafeMutablePointer<Int>) -> Int32
    private let nvrtcGetProgramLog: @convention(c) (Program?, UnsafeMutablePointer<CChar>) -> Int32
    private let nvrtcGetCUBINSize: @convention(c) (Program?, UnsafeMutablePointer<Int>) -> Int32
    private let nvrtcGetCUBIN: @convention(c) (Program?, UnsafeMutablePointer<CChar>) -> Int32
    private let nvrtcDestroyProgram: @convention(c) (UnsafeMutablePointer<Program?>) -> Int32

    /// (major, minor) of NVRTC itself, part of every kernel cache key.
    public let version: (major: Int, minor: Int)
    /// The file NVRTC was loaded from.
    public var libraryPath: String { library.path }
    /// The toolkit's include folder beside the library (for cuda_fp16.h and friends), if any.
    public let includeDirectory: String?

    public static func load(search: LibrarySearch) throws -> NVRTC {
        let library = try search.open(
            sonames: ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
            wheelFolders: ["cu13/lib", "cuda_nvrtc/lib"], name: "NVRTC (libnvrtc.so)")
        return try NVRTC(library: library, builtins: loadBuiltins(besideLibrary: library.path))
    }

    private init(library l: DynamicLibrary, builtins: DynamicLibrary?) throws {
        library = l
        self.builtins = builtins
        nvrtcVersion = try l.function("nvrtcVersion")
        nvrtcGetErrorString = try l.function("nvrtcGetErrorString")
        nvrtcCreateProgram = try l.function("nvrtcCreateProgram")
        nvrtcCompileProgram = try l.function("nvrtcCompileProgram")
        nvrtcGetProgramLogSize = try l.function("nvrtcGetProgramLogSize")
        nvrtcGetProgramLog = try l.function("nvrtcGetProgramLog")
        nvrtcGetCUBINSize = try l.function("nvrtcGetCUBINSize")
        nvrtcGetCUBIN = try l.function("nvrtcGetCUBIN")
        nvrtcDestroyProgram = try l.function("nvrtcDestroyProgram")
        var major: Int32 = 0, minor: Int32 = 0
        _ = nvrtcVersion(&major, &minor)
        version = (Int(major), Int(minor))
        includeDirectory = NVRTC.includeDirectory(besideLibrary: l.path)
    }

    public var versionString: String { "\(version.major).\(version.minor)" }

    /// Compiles one translation unit to a cubin for `arch` (e.g. `sm_90a`).
    /// - Parameters:
    ///   - name: the file name NVRTC reports in diagnostics (`gemm.cu(12): error ...`).
    ///   - headers: (include name, text) pairs that `#include "name"` resolves to.
    ///   - options: extra NVRTC options; `--gpu-architecture` is added here.
    /// - Returns: the cubin and NVRTC's log (warnings), which may be empty.
    public func compile(
        source: String, name: String, headers: [(name: String, text: String)] = [],
        arch: String, options: [String] = []
    ) throws -> (cubin: [UInt8], log: String) {
        var program: Program?
        try withCStrings(headers.map(\.text)) { texts in
            try withCStrings(headers.map(\.name)) { names in
                try check(
                    nvrtcCreateProgram(&program, source, name, Int32(headers.count), texts, names),
                    "nvrtcCreateProgram(\(name))")
            }
        }
        defer { _ = nvrtcDestroyProgram(&program) }
        let allOptions = ["--gpu-architecture=\(arch)"] + options
        let status = withCStrings(allOptions) { nvrtcCompileProgram(program, Int32(allOptions.count), $0) }
        let log = programLog(program)
        guard status == 0 else {
            throw CUDAError.compilation(source: name, arch: arch, log: log.isEmpty ? errorString(status) : log)
        }
        var size = 0
        try check(nvrtcGetCUBINSize(program, &size), "nvrtcGetCUBINSize")
        var cubin = [UInt8](repeating: 0, count: size)
        try cubin.withUnsafeMutableBytes { bytes in
            try check(nvrtcGetCUBIN(program, bytes.baseAddress!.assumingMemoryBound(to: CChar.self)), "nvrtcGetCUBIN")
        }
        return (cubin, log)
    }

    private func programLog(_ program: Program?) -> String {
        var size = 0
        guard nvrtcGetProgramLogSize(program, &size) == 0, size > 1 else { return "" }
        var buffer = [CChar](repeating: 0, count: size)
        guard nvrtcGetProgramLog(program, &buffer) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .trimmingTrailingNewlines()
    }

    private func errorString(_ status: Int32) -> String {
        nvrtcGetErrorString(status).map { String(cString: $0) } ?? "NVRTC error \(status)"
    }

    private func check(_ status: Int32, _ call: String) throws {
        if status != 0 { throw CUDAError.nvrtc(call: call, code: status, message: errorString(status)) }
    }

    /// `lib64/libnvrtc.so` -> `include` beside `lib64`, where cuda_fp16.h lives both in a
    /// toolkit (`/usr/local/cuda`) and in the pip wheel (`nvidia/cu13`).
    static func includeDirectory(besideLibrary path: String) -> String? {
        guard path.hasPrefix("/") else { return nil }
        var parts = path.split(separator: "/").map(String.init)
        parts.removeLast(2)  // the file and its lib folder
        let include = "/" + (parts + ["include"]).joined(separator: "/")
        return access(include + "/cuda_fp16.h", F_OK) == 0 ? include : nil
    }
}

/// Opens `libnvrtc-builtins.so.X.Y` from the folder of `path`, if it is there.
private func loadBuiltins(besideLibrary path: String) -> DynamicLibrary? {
    guard let slash = path.lastIndex(of: "/") else { return nil }
    let folder = String(path[..<slash])
    guard let directory = opendir(folder) else { return nil }
    defer { closedir(directory) }
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name.hasPrefix("libnvrtc-builtins.so."), !name.contains(".alt.") {
            if case .success(let library) = DynamicLibrary.open("\(folder)/\(name)") { return library }
        }
    }
    return nil
}

/// Calls `body` with a C array of C strings that stay valid for the call.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) throws -> R) rethrows -> R {
    let copies = strings.map { UnsafePointer(strdup($0)) }
    defer { copies.forEach { free(UnsafeMutablePointer(mutating: $0)) } }
    return try copies.withUnsafeBufferPointer { try body($0.baseAddress) }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var s = Substring(self)
        while let last = s.last, last.isNewline || last == "\0" { s.removeLast() }
        return String(s)
    }
}
