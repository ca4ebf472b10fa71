import CUDA

/// `copy_bytes` of copy.cu: a device-to-device copy at memory bandwidth.
public struct CopyKernel: Sendable {
    let function: KernelFunction
    /// Blocks per launch: enough resident threads on every SM to keep HBM busy.
    let blocks: Int

    public init(library: KernelLibrary) throws {
        function = try library.function("copy_bytes", in: "copy.cu")
        blocks = library.context.device.multiprocessorCount * 8
    }

    /// Copies all of `source` into `destination`, which must hold as many elements.
    public func callAsFunction<T>(from source: DeviceBuffer<T>, to destination: DeviceBuffer<T>, on stream: CUDAStream) throws {
        guard source.count == destination.count else {
            throw CUDAError.invalidArgument("copy: \(source.count) elements into a buffer of \(destination.count)")
        }
        let bytes = source.byteCount
        guard bytes > 0 else { return }
        let grid = min(blocks, (bytes / 16 + 255) / 256 + 1)
        try function.launch(grid: Dim3(grid), block: Dim3(256), on: stream, source.pointer, destination.pointer, UInt64(bytes))
    }
}
