/// The CUDA driver, loaded from libcuda.so.1 and initialised. One per process is enough;
/// every other CUDA object keeps a reference to it.
public final class CUDADriver: @unchecked Sendable {
    let api: DriverAPI
    /// The driver's CUDA version as the API encodes it: 13000 for 13.0.
    public let version: Int
    /// The file the driver was loaded from.
    public var libraryPath: String { api.library.path }

    /// Loads and initialises the driver. Fails with one clear error when there is no driver
    /// (`libraryNotFound`) or no usable GPU (`CUDA_ERROR_NO_DEVICE` and the like).
    public static func load(search: LibrarySearch = LibrarySearch()) throws -> CUDADriver {
        // The driver lives in the loader path; a toolkit's lib64/stubs copy is a stub that
        // fails every call, so we never look there.
        let driverSearch = LibrarySearch(explicitPaths: ["/usr/local/nvidia/lib64", "/usr/lib/wsl/lib"])
        let library = try driverSearch.open(sonames: ["libcuda.so.1"], wheelFolders: [], name: "CUDA driver (libcuda.so.1)")
        return try CUDADriver(api: DriverAPI(library: library))
    }

    private init(api: DriverAPI) throws {
        self.api = api
        var v: Int32 = 0
        try api.check(api.cuInit(0), "cuInit")
        try api.check(api.cuDriverGetVersion(&v), "cuDriverGetVersion")
        self.version = Int(v)
    }

    /// "13.0" for 13000.
    public var versionString: String { "\(version / 1000).\(version % 1000 / 10)" }

    public func deviceCount() throws -> Int {
        var n: Int32 = 0
        try check(api.cuDeviceGetCount(&n), "cuDeviceGetCount")
        return Int(n)
    }

    /// The device with this ordinal, with the properties kernels and reports need.
    public func device(_ ordinal: Int = 0) throws -> CUDADevice {
        let count = try deviceCount()
        guard count > 0 else { throw CUDAError.noDevice }
        guard (0..<count).contains(ordinal) else {
            throw CUDAError.invalidArgument("no GPU \(ordinal): the driver sees \(count)")
        }
        var handle: CUdevice = 0
        try check(api.cuDeviceGet(&handle, Int32(ordinal)), "cuDeviceGet")
        return try CUDADevice(driver: self, ordinal: ordinal, handle: handle)
    }

    /// Throws `CUDAError.driver` naming `call` and the CUresult unless `result` is CUDA_SUCCESS.
    @inline(__always)
    func check(_ result: CUresult, _ call: @autoclosure () -> String) throws {
        if result != 0 { throw api.error(result, call()) }
    }
}

extension DriverAPI {
    @inline(__always)
    func check(_ result: CUresult, _ call: @autoclosure () -> String) throws {
        if result != 0 { throw error(result, call()) }
    }

    /// The error for a failed call, named by cuGetErrorName (`CUDA_ERROR_OUT_OF_MEMORY`).
    func error(_ result: CUresult, _ call: String) -> CUDAError {
        var name: UnsafePointer<CChar>?
        var message: UnsafePointer<CChar>?
        _ = cuGetErrorName(result, &name)
        _ = cuGetErrorString(result, &message)
        return .driver(
            call: call, code: result,
            name: name.map { String(cString: $0) } ?? "CUDA_ERROR_\(result)",
            message: message.map { String(cString: $0) } ?? "unknown error")
    }
}

/// Properties of one GPU.
public struct CUDADevice: Sendable {
    public let driver: CUDADriver
    public let ordinal: Int
    let handle: CUdevice
    public let name: String
    /// (major, minor): (9, 0) for Hopper.
    public let computeCapability: (major: Int, minor: Int)
    public let multiprocessorCount: Int
    public let totalMemoryBytes: Int
    public let l2CacheBytes: Int
    /// The most dynamic shared memory a block can opt in to.
    public let maxSharedMemoryPerBlock: Int

    init(driver: CUDADriver, ordinal: Int, handle: CUdevice) throws {
        self.driver = driver
        self.ordinal = ordinal
        self.handle = handle
        var buffer = [CChar](repeating: 0, count: 256)
        try driver.check(driver.api.cuDeviceGetName(&buffer, 255, handle), "cuDeviceGetName")
        name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        func attribute(_ id: Int32, _ label: String) throws -> Int {
            var value: Int32 = 0
            try driver.check(driver.api.cuDeviceGetAttribute(&value, id, handle), "cuDeviceGetAttribute(\(label))")
            return Int(value)
        }
        computeCapability = (try attribute(75, "COMPUTE_CAPABILITY_MAJOR"), try attribute(76, "COMPUTE_CAPABILITY_MINOR"))
        multiprocessorCount = try attribute(16, "MULTIPROCESSOR_COUNT")
        l2CacheBytes = try attribute(38, "L2_CACHE_SIZE")
        maxSharedMemoryPerBlock = try attribute(97, "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN")
        var bytes = 0
        try driver.check(driver.api.cuDeviceTotalMem(&bytes, handle), "cuDeviceTotalMem")
        totalMemoryBytes = bytes
    }

    /// The NVRTC target for this device: `sm_90a` on Hopper (wgmma and setmaxnreg need the
    /// arch-specific variant), `sm_XY` elsewhere.
    public var architecture: String {
        let (major, minor) = computeCapability
        return major == 9 && minor == 0 ? "sm_90a" : "sm_\(major)\(minor)"
    }

    /// Retains the device's primary context (the one the runtime API and PyTorch share).
    public func makeContext() throws -> CUDAContext {
        try CUDAContext(device: self)
    }
}
