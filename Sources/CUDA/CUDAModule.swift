/// A loaded cubin: the kernels of one source file.
public final class CUDAModule: @unchecked Sendable {
    public let context: CUDAContext
    let handle: Handle

    init(context: CUDAContext, image: [UInt8]) throws {
        self.context = context
        try context.bind()
        var module: Handle?
        try image.withUnsafeBytes { bytes in
            try context.driver.check(context.api.cuModuleLoadData(&module, bytes.baseAddress!), "cuModuleLoadData")
        }
        handle = module!
    }

    deinit {
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuModuleUnload(handle)
    }

    /// The `extern "C"` kernel `name`; `dependentLaunch` where the context supports it
    /// (see `KernelFunction.dependentLaunch`).
    public func function(_ name: String, dependentLaunch: Bool = false) throws -> KernelFunction {
        try context.bind()
        var function: Handle?
        try context.driver.check(context.api.cuModuleGetFunction(&function, handle, name), "cuModuleGetFunction(\(name))")
        return KernelFunction(module: self, name: name, handle: function!,
                              dependentLaunch: dependentLaunch && context.supportsDependentLaunch)
    }
}

/// A grid or block shape.
public struct Dim3: Sendable, Equatable {
    public var x: Int, y: Int, z: Int
    public init(_ x: Int, _ y: Int = 1, _ z: Int = 1) { self.x = x; self.y = y; self.z = z }
}

/// One kernel entry point. Launch arguments are typed Swift values laid out exactly as the
/// kernel's C parameters (`Int32` for `int`, `DevicePointer` for any pointer, `Float`, ...).
public struct KernelFunction: @unchecked Sendable {
    public let module: CUDAModule
    public let name: String
    let handle: Handle
    /// Launched as a programmatic dependent of the kernel before it on the stream (Hopper): the
    /// GPU may start this grid while that one finishes, so launch latency and this kernel's
    /// prologue overlap the previous kernel's tail. Sound only for kernels that execute
    /// `griddepcontrol.wait` in every block before touching memory earlier kernels use (each of
    /// comet's kernels starts with common.cuh's `begin_dependent_work`): the wait returns once
    /// the previous grid has completed and its writes are visible, and since every kernel waits,
    /// each grid also completes after all grids before it.
    public let dependentLaunch: Bool

    /// Allows more than 48 KiB of dynamic shared memory.
    public func setMaxDynamicSharedMemory(_ bytes: Int) throws {
        let context = module.context
        try context.driver.check(
            context.api.cuFuncSetAttribute(handle, 8, Int32(bytes)), "cuFuncSetAttribute(\(name), MAX_DYNAMIC_SHARED_SIZE_BYTES)")
    }

    /// Asks for this share (0-100) of the SM's unified L1/shared memory as shared memory, so
    /// that as many CTAs fit as their shared memory allows (the driver's default may pick less).
    public func setPreferredSharedMemoryCarveout(percent: Int) throws {
        let context = module.context
        try context.driver.check(
            context.api.cuFuncSetAttribute(handle, 9, Int32(percent)), "cuFuncSetAttribute(\(name), PREFERRED_SHARED_MEMORY_CARVEOUT)")
    }

    /// Queues the kernel on `stream`. The arguments are packed on the stack: no allocation.
    public func launch<each Argument: BitwiseCopyable>(
        grid: Dim3, block: Dim3, sharedMemoryBytes: Int = 0, on stream: CUDAStream,
        _ arguments: repeat each Argument
    ) throws {
        guard grid.x > 0, grid.y > 0, grid.z > 0, block.x > 0, block.y > 0, block.z > 0,
              grid.x < 1 << 31, grid.y < 1 << 16, grid.z < 1 << 16, block.x * block.y * block.z <= 1024
        else {
            throw CUDAError.invalidArgument("launch of \(name): bad grid \(grid) or block \(block)")
        }
        var count = 0
        var bytes = 0
        for argument in repeat each arguments {
            bytes = align(bytes, to: alignment(of: argument)) + size(of: argument)
            count += 1
        }
        let context = module.context
        try withUnsafeTemporaryAllocation(byteCount: max(bytes, 1), alignment: 16) { storage in
            try withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: max(count, 1)) { pointers in
                var offset = 0
                var index = 0
                for argument in repeat each arguments {
                    offset = align(offset, to: alignment(of: argument))
                    let slot = storage.baseAddress! + offset
                    slot.initializeMemory(as: type(of: argument), repeating: argument, count: 1)
                    pointers[index] = slot
                    offset += size(of: argument)
                    index += 1
                }
                try context.bind()
                if dependentLaunch, let launchEx = context.api.cuLaunchKernelEx {
                    try withDependentLaunchConfig(grid: grid, block: block, sharedMemoryBytes: sharedMemoryBytes, stream: stream) { config in
                        try context.driver.check(launchEx(config, handle, pointers.baseAddress, nil), "cuLaunchKernelEx(\(name))")
                    }
                } else {
                    try context.driver.check(
                        context.api.cuLaunchKernel(
                            handle, UInt32(grid.x), UInt32(grid.y), UInt32(grid.z),
                            UInt32(block.x), UInt32(block.y), UInt32(block.z),
                            UInt32(sharedMemoryBytes), stream.handle, pointers.baseAddress, nil),
                        "cuLaunchKernel(\(name))")
                }
            }
        }
    }
}

/// Calls `body` with a `CUlaunchConfig` (cuda.h) for this launch carrying one attribute,
/// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1. Both structs are written at their
/// C offsets into stack memory: CUlaunchConfig is 7 x u32, pad to 32, stream at 32, attributes
/// at 40, their count at 48 (56 bytes); CUlaunchAttribute is the u32 id, 4 bytes of pad and a
/// 64-byte value union whose first int is the flag (72 bytes).
private func withDependentLaunchConfig(
    grid: Dim3, block: Dim3, sharedMemoryBytes: Int, stream: CUDAStream, _ body: (UnsafeRawPointer) throws -> Void
) throws {
    try withUnsafeTemporaryAllocation(byteCount: 56 + 72, alignment: 16) { raw in
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        let base = raw.baseAddress!, attribute = base + 56
        // Field by field: an array of the seven values would allocate on every launch.
        base.storeBytes(of: UInt32(grid.x), toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: UInt32(grid.y), toByteOffset: 4, as: UInt32.self)
        base.storeBytes(of: UInt32(grid.z), toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(block.x), toByteOffset: 12, as: UInt32.self)
        base.storeBytes(of: UInt32(block.y), toByteOffset: 16, as: UInt32.self)
        base.storeBytes(of: UInt32(block.z), toByteOffset: 20, as: UInt32.self)
        base.storeBytes(of: UInt32(sharedMemoryBytes), toByteOffset: 24, as: UInt32.self)
        base.storeBytes(of: stream.handle, toByteOffset: 32, as: Handle.self)
        base.storeBytes(of: attribute, toByteOffset: 40, as: UnsafeMutableRawPointer.self)
        base.storeBytes(of: UInt32(1), toByteOffset: 48, as: UInt32.self)
        attribute.storeBytes(of: UInt32(6), toByteOffset: 0, as: UInt32.self)  // PROGRAMMATIC_STREAM_SERIALIZATION
        attribute.storeBytes(of: Int32(1), toByteOffset: 8, as: Int32.self)    // programmaticStreamSerializationAllowed
        try body(UnsafeRawPointer(base))
    }
}

private func size<T>(of _: T) -> Int { MemoryLayout<T>.size }
private func alignment<T>(of _: T) -> Int { MemoryLayout<T>.alignment }
private func align(_ offset: Int, to alignment: Int) -> Int { (offset + alignment - 1) / alignment * alignment }
