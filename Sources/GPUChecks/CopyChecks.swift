import CUDA
import CPUReference
import Kernels

/// copy.cu against the bytes it was given, directly and replayed from a CUDA graph.
enum CopyChecks {
    static let all = [exact, graphReplay]

    /// Sizes around the 16-byte vector width and the unrolled stride, plus a large one.
    static let exact = GPUCheck("copy.exact") { env in
        let copy = try CopyKernel(library: env.library)
        let sizes = [1, 15, 16, 17, 4096 + 5, 1_000_003, (64 << 20) + 7]
        for size in sizes {
            let bytes = env.random.bytes(size)
            let source = try env.context.allocate(UInt8.self, count: size)
            let destination = try env.context.allocate(UInt8.self, count: size)
            try source.copy(from: bytes)
            try destination.fill(byte: 0xA5, on: env.stream)
            try copy(from: source, to: destination, on: env.stream)
            try env.stream.synchronize()
            try expectEqual(try destination.toArray(), bytes, "copy of \(size) bytes")
        }
        return "sizes \(sizes.map(String.init).joined(separator: ", "))"
    }

    /// A captured graph (poison, then copy) replays the work each launch, on new data.
    static let graphReplay = GPUCheck("copy.graph-replay") { env in
        let copy = try CopyKernel(library: env.library)
        let size = (3 << 20) + 9
        let source = try env.context.allocate(UInt8.self, count: size)
        let destination = try env.context.allocate(UInt8.self, count: size)
        try env.stream.beginCapture()
        do {
            try destination.fill(byte: 0xA5, on: env.stream)
            try copy(from: source, to: destination, on: env.stream)
        } catch {
            _ = try? env.stream.endCapture()
            throw error
        }
        let graph = try env.stream.endCapture().instantiate()
        for replay in 0..<3 {
            let bytes = env.random.bytes(size)
            try source.copy(from: bytes)
            try graph.launch(on: env.stream)
            try env.stream.synchronize()
            try expectEqual(try destination.toArray(), bytes, "graph replay \(replay)")
        }
        return "3 replays of \(size) bytes"
    }
}
