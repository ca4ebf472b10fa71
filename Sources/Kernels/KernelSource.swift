/// One CUDA C++ file of `Sources/Kernels/cuda`, embedded in the binary at build time.
public struct KernelSource: Sendable {
    /// The file name, e.g. `copy.cu`; NVRTC reports errors against it.
    public let name: String
    public let text: String

    public var isHeader: Bool { name.hasSuffix(".cuh") }

    /// Every compilable translation unit (`.cu`), sorted by name.
    public static var units: [KernelSource] { embedded.filter { !$0.isHeader } }
    /// Every header (`.cuh`); all are offered to every unit's `#include "..."`.
    public static var headers: [KernelSource] { embedded.filter(\.isHeader) }

    public static func named(_ name: String) -> KernelSource? { embedded.first { $0.name == name } }
}
