import CUDA

/// `copy_bytes` of copy.cu: a device-to-device copy at memory bandwidth.
public struct CopyKernel: Sendable {
    let function: KernelFunction
    /// `COPY_THREADS` of copy.cu.
    static let threads = 128

    public init(library: KernelLibrary) throws {
        function = try library.function("copy_bytes", in: "copy.cu")
    }

    /// Copies all of `source` into `destination`, which must hold as many elements.
    public func callAsFunction<T>(from source: DeviceBuffer<T>, to destination: DeviceBuffer<T>, on stream: CUDAStream) throws {
        guard source.count == destination.count else {
            throw CUDAError.invalidArgument("copy: \(source.count) elements into a buffer of \(destination.count)")
        }
        let bytes = source.byteCount
        guard bytes > 0 else { return }
        // One 16-byte vector per thread; at least one block, which also copies the tail.
        let grid = max(1, (bytes / 16 + Self.threads - 1) / Self.threads)
        try function.launch(grid: Dim3(grid), block: Dim3(Self.threads), on: stream, source.pointer, destination.pointer, UInt64(bytes))
    }
}

/// `hold_stream` of copy.cu: a single thread that keeps a stream busy for a while (profiling).
public struct StreamHoldKernel: Sendable {
    let function: KernelFunction

    public init(library: KernelLibrary) throws {
        function = try library.function("hold_stream", in: "copy.cu")
    }

    /// Queues a kernel that returns `milliseconds` after it starts.
    public func hold(milliseconds: Double, on stream: CUDAStream) throws {
        try function.launch(grid: Dim3(1), block: Dim3(1), on: stream, UInt64(max(0, milliseconds) * 1e6))
    }
}
