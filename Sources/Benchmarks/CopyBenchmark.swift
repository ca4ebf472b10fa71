import CPUReference
import CUDA
import Kernels

/// `comet bench copy`: our copy kernel against the driver's cuMemcpyDtoD, same buffers, same run.
public struct CopyBenchmark {
    public struct Result: Sendable, Codable {
        public let device: String
        public let bytes: Int
        public let iterations: Int
        /// Median milliseconds of one copy.
        public let kernelMilliseconds: Double
        public let driverMilliseconds: Double
        /// Bytes read plus bytes written per second, in TB/s (10^12).
        public let kernelTBps: Double
        public let driverTBps: Double
        public var ratio: Double { kernelTBps / driverTBps }
    }

    public let library: KernelLibrary
    public let bytes: Int
    public let iterations: Int

    public init(library: KernelLibrary, bytes: Int, iterations: Int) {
        self.library = library
        self.bytes = bytes
        self.iterations = iterations
    }

    public func run() throws -> Result {
        let context = library.context
        let stream = try context.makeStream()
        let copy = try CopyKernel(library: library)
        let source = try context.allocate(UInt8.self, count: bytes)
        let destination = try context.allocate(UInt8.self, count: bytes)
        // Random contents (never zeros): fill 64 MiB on the host, then tile it on the device.
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let tile = min(bytes, 64 << 20)
        let tileBuffer = try context.allocate(UInt8.self, count: tile)
        try tileBuffer.copy(from: random.bytes(tile))
        var offset = 0
        while offset < bytes {
            let n = min(tile, bytes - offset)
            try context.copy(bytes: n, from: tileBuffer.pointer, to: source.pointer(at: offset), on: stream)
            offset += n
        }
        try stream.synchronize()

        let warmup = 3
        let kernel = try medianMilliseconds(on: stream, warmup: warmup, iterations: iterations) {
            try copy(from: source, to: destination, on: stream)
        }
        let driver = try medianMilliseconds(on: stream, warmup: warmup, iterations: iterations) {
            try destination.copy(from: source, on: stream)
        }
        let tbps = { (ms: Double) in 2 * Double(bytes) / (ms * 1e-3) / 1e12 }
        return Result(
            device: context.device.name, bytes: bytes, iterations: iterations,
            kernelMilliseconds: kernel, driverMilliseconds: driver, kernelTBps: tbps(kernel), driverTBps: tbps(driver))
    }

    /// The table `comet bench copy` prints.
    public static func table(_ r: Result) -> String {
        let gib = Double(r.bytes) / Double(1 << 30)
        return """
            copy bandwidth on \(r.device): \(fixed(gib, 2)) GiB per copy, median of \(r.iterations), read + write
              \(padded("what", 26))\(padded("TB/s", 10))ms
              \(padded("comet copy_bytes", 26))\(padded(fixed(r.kernelTBps, 3), 10))\(fixed(r.kernelMilliseconds, 4))
              \(padded("cuMemcpyDtoDAsync", 26))\(padded(fixed(r.driverTBps, 3), 10))\(fixed(r.driverMilliseconds, 4))
              ratio comet / driver: \(fixed(r.ratio, 3))x
            """
    }
}
