/// `count` elements of device memory, freed when the buffer is released.
public final class DeviceBuffer<Element: BitwiseCopyable>: @unchecked Sendable {
    public let context: CUDAContext
    public let count: Int
    /// The device address, as passed to kernels.
    public let pointer: DevicePointer
    public var byteCount: Int { count * MemoryLayout<Element>.stride }

    /// The buffer this one views (kept alive by the view); nil when this buffer owns its memory.
    private let owner: AnyObject?

    init(context: CUDAContext, count: Int) throws {
        guard count >= 0 else { throw CUDAError.invalidArgument("cannot allocate \(count) elements") }
        self.context = context
        self.count = count
        owner = nil
        try context.bind()
        var address: DevicePointer = 0
        // cuMemAlloc rejects 0 bytes; an empty buffer gets a 1-byte allocation it never uses.
        let bytes = max(count * MemoryLayout<Element>.stride, 1)
        try context.driver.check(context.api.cuMemAlloc(&address, bytes), "cuMemAlloc(\(bytes) bytes)")
        pointer = address
    }

    private init(viewing owner: DeviceBuffer<Element>, from start: Int, count: Int) {
        context = owner.context
        self.count = count
        pointer = owner.pointer(at: start)
        self.owner = owner
    }

    /// Elements `start ..< start + count` of this buffer, as a buffer that shares its memory (and
    /// keeps it alive): e.g. the rows of one step in scratch sized for the largest step.
    public func slice(_ start: Int, count: Int) -> DeviceBuffer<Element> {
        precondition(start >= 0 && count >= 0 && start + count <= self.count, "DeviceBuffer.slice out of range")
        return DeviceBuffer(viewing: self, from: start, count: count)
    }

    /// The first `count` elements, as a view (see `slice`).
    public func prefix(_ count: Int) -> DeviceBuffer<Element> { slice(0, count: count) }

    deinit {
        guard owner == nil else { return }
        // Errors cannot propagate from deinit; a failed free here means the context is gone.
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuMemFree(pointer)
    }

    /// The address of element `index` (for kernels that take an offset view).
    public func pointer(at index: Int) -> DevicePointer {
        pointer + DevicePointer(index * MemoryLayout<Element>.stride)
    }

    /// Copies `host` into the buffer and waits. `host.count` must equal `count`.
    public func copy(from host: [Element]) throws {
        try requireCount(host.count, "copy(from:)")
        try context.bind()
        try host.withUnsafeBytes { bytes in
            try context.driver.check(context.api.cuMemcpyHtoDAsync(pointer, bytes.baseAddress!, byteCount, nil), "cuMemcpyHtoDAsync")
        }
        try context.driver.check(context.api.cuStreamSynchronize(nil), "cuStreamSynchronize")
    }

    /// The buffer's contents, after all prior work on the legacy default stream.
    public func toArray() throws -> [Element] {
        try context.bind()
        return try [Element](unsafeUninitializedCapacity: count) { out, initialized in
            if count > 0 {
                try context.driver.check(
                    context.api.cuMemcpyDtoHAsync(UnsafeMutableRawPointer(out.baseAddress!), pointer, byteCount, nil),
                    "cuMemcpyDtoHAsync")
                try context.driver.check(context.api.cuStreamSynchronize(nil), "cuStreamSynchronize")
            }
            initialized = count
        }
    }

    /// Asynchronous upload from pinned memory on `stream`.
    public func copy(from host: PinnedBuffer<Element>, on stream: CUDAStream) throws {
        try requireCount(host.count, "copy(from: PinnedBuffer)")
        try context.bind()
        try context.driver.check(
            context.api.cuMemcpyHtoDAsync(pointer, UnsafeRawPointer(host.baseAddress), byteCount, stream.handle),
            "cuMemcpyHtoDAsync")
    }

    /// Asynchronous download into pinned memory on `stream`.
    public func copy(to host: PinnedBuffer<Element>, on stream: CUDAStream) throws {
        try requireCount(host.count, "copy(to: PinnedBuffer)")
        try context.bind()
        try context.driver.check(
            context.api.cuMemcpyDtoHAsync(UnsafeMutableRawPointer(host.baseAddress), pointer, byteCount, stream.handle),
            "cuMemcpyDtoHAsync")
    }

    /// Asynchronous device-to-device copy of the whole of `source` (same count) on `stream`.
    public func copy(from source: DeviceBuffer<Element>, on stream: CUDAStream) throws {
        try requireCount(source.count, "copy(from: DeviceBuffer)")
        try context.bind()
        try context.driver.check(context.api.cuMemcpyDtoDAsync(pointer, source.pointer, byteCount, stream.handle), "cuMemcpyDtoDAsync")
    }

    /// Sets every byte to `byte` on `stream` (used to poison outputs before a check).
    public func fill(byte: UInt8, on stream: CUDAStream) throws {
        try context.bind()
        try context.driver.check(context.api.cuMemsetD8Async(pointer, byte, byteCount, stream.handle), "cuMemsetD8Async")
    }

    private func requireCount(_ other: Int, _ what: String) throws {
        guard other == count else {
            throw CUDAError.invalidArgument("\(what): \(other) elements into a buffer of \(count)")
        }
    }
}

/// Page-locked host memory: the source and target of truly asynchronous copies.
public final class PinnedBuffer<Element: BitwiseCopyable>: @unchecked Sendable {
    public let context: CUDAContext
    public let count: Int
    public let baseAddress: UnsafeMutablePointer<Element>

    /// The buffer this one views (kept alive by the view); nil when this buffer owns its memory.
    private let owner: AnyObject?

    init(context: CUDAContext, count: Int) throws {
        guard count >= 0 else { throw CUDAError.invalidArgument("cannot allocate \(count) elements") }
        self.context = context
        self.count = count
        owner = nil
        try context.bind()
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count * MemoryLayout<Element>.stride, 1)
        try context.driver.check(context.api.cuMemHostAlloc(&raw, bytes, 0), "cuMemHostAlloc(\(bytes) bytes)")
        baseAddress = raw!.bindMemory(to: Element.self, capacity: max(count, 1))
    }

    deinit {
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuMemFreeHost(UnsafeMutableRawPointer(baseAddress))
    }

    public var buffer: UnsafeMutableBufferPointer<Element> { UnsafeMutableBufferPointer(start: baseAddress, count: count) }

    public subscript(index: Int) -> Element {
        get { precondition(index >= 0 && index < count); return baseAddress[index] }
        set { precondition(index >= 0 && index < count); baseAddress[index] = newValue }
    }
}
