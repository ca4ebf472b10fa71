import CUDA
import FoundationEssentials
import Quant

/// Compiles embedded kernel sources with NVRTC, caching cubins on disk.
///
/// The cache key hashes everything that changes the output: the unit's text, every header,
/// the options, the target architecture and the NVRTC version. Entries are written to a
/// temporary file and renamed into place, so a crash never leaves a torn cubin behind, and
/// an unreadable or non-ELF entry is simply compiled again.
public final class KernelCompiler: Sendable {
    public let nvrtc: NVRTC
    /// Where cubins are kept; nil disables the disk cache.
    public let cacheDirectory: String?

    /// Options for every unit. `-lineinfo` lets ncu attribute time to source lines at no cost.
    /// (NVRTC rejects `-O3`; it optimises fully by default.)
    public var options: [String] {
        var options = ["-std=c++17", "-lineinfo", "-default-device"]
        if let include = nvrtc.includeDirectory { options.append("-I\(include)") }
        return options + extraOptions
    }

    /// Options added after `options`, e.g. `--ptxas-options=-v` for the resource report.
    public let extraOptions: [String]

    public init(nvrtc: NVRTC, cacheDirectory: String?, extraOptions: [String] = []) {
        self.nvrtc = nvrtc
        self.cacheDirectory = cacheDirectory
        self.extraOptions = extraOptions
    }

    /// Whether a compile came from the cache, and NVRTC's warnings when it did not.
    public struct Result: Sendable {
        public let cubin: [UInt8]
        public let fromCache: Bool
        public let log: String
    }

    public func cacheKey(for unit: KernelSource, arch: String) -> String {
        var key = "comet-kernel-cache-v1\0\(unit.name)\0\(unit.text)\0"
        for header in KernelSource.headers { key += "\(header.name)\0\(header.text)\0" }
        key += "\(options.joined(separator: " "))\0\(arch)\0nvrtc \(nvrtc.versionString)"
        return SHA256.hex(key)
    }

    /// The cubin of `unit` for `arch`, from the cache when `useCache` and present.
    public func compile(_ unit: KernelSource, arch: String, useCache: Bool = true) throws -> Result {
        let path = cachePath(for: unit, arch: arch)
        if useCache, let path, let cubin = FileManager.default.contents(atPath: path).map(Array.init), isELF(cubin) {
            return Result(cubin: cubin, fromCache: true, log: "")
        }
        let (cubin, log) = try nvrtc.compile(
            source: unit.text, name: unit.name,
            headers: KernelSource.headers.map { ($0.name, $0.text) }, arch: arch, options: options)
        if let path { store(cubin, at: path) }
        return Result(cubin: cubin, fromCache: false, log: log)
    }

    private func cachePath(for unit: KernelSource, arch: String) -> String? {
        guard let cacheDirectory else { return nil }
        let stem = unit.name.split(separator: ".").first.map(String.init) ?? unit.name
        return "\(cacheDirectory)/\(stem)-\(arch)-\(cacheKey(for: unit, arch: arch).prefix(32)).cubin"
    }

    /// Best effort: a cache that cannot be written (read-only home) only costs a recompile.
    private func store(_ cubin: [UInt8], at path: String) {
        guard let cacheDirectory else { return }
        do {
            try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
            try Data(cubin).write(to: URL(filePath: path), options: .atomic)
        } catch {
            return
        }
    }

    private func isELF(_ bytes: [UInt8]) -> Bool {
        bytes.count > 4 && bytes[0] == 0x7f && bytes[1] == 0x45 && bytes[2] == 0x4c && bytes[3] == 0x46
    }

    /// `$COMET_CACHE_DIR`, else `$XDG_CACHE_HOME/comet/kernels`, else `~/.cache/comet/kernels`.
    public static func defaultCacheDirectory(environment env: [String: String]) -> String {
        if let dir = env["COMET_CACHE_DIR"], !dir.isEmpty { return dir }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return "\(xdg)/comet/kernels" }
        return "\(env["HOME"] ?? "/tmp")/.cache/comet/kernels"
    }
}
