/// A retained primary context of one device. Every buffer, stream, event and module keeps its
/// context alive, and binds it to the calling thread before each driver call, so objects may
/// be used from any thread (Swift tasks hop between threads).
public final class CUDAContext: @unchecked Sendable {
    public let device: CUDADevice
    let handle: Handle
    var driver: CUDADriver { device.driver }
    var api: DriverAPI { device.driver.api }

    init(device: CUDADevice) throws {
        self.device = device
        var context: Handle?
        try device.driver.check(device.driver.api.cuDevicePrimaryCtxRetain(&context, device.handle), "cuDevicePrimaryCtxRetain")
        guard let context else { throw CUDAError.noDevice }
        handle = context
        try bind()
    }

    deinit { _ = api.cuDevicePrimaryCtxRelease(device.handle) }

    /// Whether kernels may be launched as programmatic dependents (Hopper and later, a CUDA 12+
    /// driver): see `KernelFunction.dependentLaunch`.
    public var supportsDependentLaunch: Bool { device.computeCapability.major >= 9 && api.cuLaunchKernelEx != nil }

    /// Makes this context current on the calling thread (a thread-local store in the driver).
    @inline(__always)
    func bind() throws {
        try driver.check(api.cuCtxSetCurrent(handle), "cuCtxSetCurrent")
    }

    /// Waits for all work on this device.
    public func synchronize() throws {
        try bind()
        try driver.check(api.cuCtxSynchronize(), "cuCtxSynchronize")
    }

    /// Free and total device memory in bytes.
    public func memoryInfo() throws -> (free: Int, total: Int) {
        try bind()
        var free = 0, total = 0
        try driver.check(api.cuMemGetInfo(&free, &total), "cuMemGetInfo")
        return (free, total)
    }

    public func makeStream() throws -> CUDAStream { try CUDAStream(context: self) }
    public func makeEvent() throws -> CUDAEvent { try CUDAEvent(context: self) }

    public func allocate<Element: BitwiseCopyable>(_ type: Element.Type, count: Int) throws -> DeviceBuffer<Element> {
        try DeviceBuffer(context: self, count: count)
    }

    public func allocatePinned<Element: BitwiseCopyable>(_ type: Element.Type, count: Int) throws -> PinnedBuffer<Element> {
        try PinnedBuffer(context: self, count: count)
    }

    /// Loads a compiled module (cubin or PTX image).
    public func loadModule(image: [UInt8]) throws -> CUDAModule {
        try CUDAModule(context: self, image: image)
    }
}

extension CUDAContext {
    /// A raw device-to-device copy of `bytes` bytes between addresses (for sub-ranges of
    /// buffers; whole buffers use `DeviceBuffer.copy(from:on:)`).
    public func copy(bytes: Int, from source: DevicePointer, to destination: DevicePointer, on stream: CUDAStream) throws {
        try bind()
        try driver.check(api.cuMemcpyDtoDAsync(destination, source, bytes, stream.handle), "cuMemcpyDtoDAsync")
    }

    /// An asynchronous upload of `bytes` bytes; `source` must be pinned memory (`PinnedBuffer`) and
    /// stay untouched until the stream passes the copy.
    public func copy(bytes: Int, fromHost source: UnsafeRawPointer, to destination: DevicePointer, on stream: CUDAStream) throws {
        guard bytes > 0 else { return }
        try bind()
        try driver.check(api.cuMemcpyHtoDAsync(destination, source, bytes, stream.handle), "cuMemcpyHtoDAsync")
    }

    /// An asynchronous download of `bytes` bytes into pinned memory; read it after synchronizing.
    public func copy(bytes: Int, from source: DevicePointer, toHost destination: UnsafeMutableRawPointer, on stream: CUDAStream) throws {
        guard bytes > 0 else { return }
        try bind()
        try driver.check(api.cuMemcpyDtoHAsync(destination, source, bytes, stream.handle), "cuMemcpyDtoHAsync")
    }
}
