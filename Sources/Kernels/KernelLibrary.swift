import CUDA
import Synchronization

/// The kernels of one GPU: compiles (or fetches from the cache) and loads each source file's
/// module on first use, then hands out its functions.
public final class KernelLibrary: Sendable {
    public let context: CUDAContext
    public let compiler: KernelCompiler
    /// The NVRTC target of this GPU (`sm_90a` on an H200).
    public let arch: String
    /// Whether this library asks for its kernels to be launched as programmatic dependents; the
    /// module grants it where the GPU supports it (`CUDAModule.function`). Every kernel of
    /// Sources/Kernels/cuda begins with `begin_dependent_work`, which makes that sound;
    /// `EmbeddedSourcesTests` holds each kernel to it.
    public let dependentLaunch: Bool
    private let modules = Mutex<[String: CUDAModule]>([:])

    public init(context: CUDAContext, compiler: KernelCompiler, dependentLaunch: Bool = false) {
        self.context = context
        self.compiler = compiler
        self.arch = context.device.architecture
        self.dependentLaunch = dependentLaunch
    }

    /// The kernel `name` defined in the embedded file `source`.
    public func function(_ name: String, in source: String) throws -> KernelFunction {
        try module(source).function(name, dependentLaunch: dependentLaunch)
    }

    public func module(_ source: String) throws -> CUDAModule {
        if let module = modules.withLock({ $0[source] }) { return module }
        guard let unit = KernelSource.named(source), !unit.isHeader else {
            throw CUDAError.invalidArgument("no kernel source \(source) is embedded")
        }
        let module = try context.loadModule(image: compiler.compile(unit, arch: arch).cubin)
        return modules.withLock { cached in
            if let existing = cached[source] { return existing }
            cached[source] = module
            return module
        }
    }
}
