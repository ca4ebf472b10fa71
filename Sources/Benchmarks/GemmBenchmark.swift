import CPUReference
import CUDA
import Kernels
import Quant

/// `comet bench gemm`: the W4Ax GEMM against cuBLASLt bf16 and FP8 e4m3 on the linear layers
/// of Llama-3-8B and -70B, in one run on one GPU, with rotating buffers larger than the L2.
public struct GemmBenchmark {
    /// One linear layer: Y[M, N] = X[M, K] . W[N, K]^T.
    public struct Shape: Sendable, Codable {
        public let model: String, layer: String, n: Int, k: Int
    }

    public static let llama3Shapes: [Shape] = [
        Shape(model: "llama3-8b", layer: "qkv", n: 6144, k: 4096),
        Shape(model: "llama3-8b", layer: "o", n: 4096, k: 4096),
        Shape(model: "llama3-8b", layer: "gate_up", n: 28672, k: 4096),
        Shape(model: "llama3-8b", layer: "down", n: 4096, k: 14336),
        Shape(model: "llama3-70b", layer: "qkv", n: 10240, k: 8192),
        Shape(model: "llama3-70b", layer: "o", n: 8192, k: 8192),
        Shape(model: "llama3-70b", layer: "gate_up", n: 57344, k: 8192),
        Shape(model: "llama3-70b", layer: "down", n: 8192, k: 28672),
    ]

    public struct Row: Sendable, Codable {
        public let shape: Shape
        public let m: Int
        public let int8Blocks: Int, blocks: Int
        /// Microseconds per call.
        public let ours: Double, bf16: Double?, fp8: Double?
        public var oursTFLOPS: Double { 2 * Double(m * shape.n * shape.k) / ours / 1e6 }
        /// Bytes our kernel must move at least (weights, scales, activations, output) per second.
        public let oursBytes: Int
        public var oursTBps: Double { Double(oursBytes) / ours / 1e6 }
        public var speedupOverBF16: Double? { bf16.map { $0 / ours } }
        public var speedupOverFP8: Double? { fp8.map { $0 / ours } }
    }

    public let library: KernelLibrary
    public let cublas: CuBLASLt?
    /// Fraction of K-blocks in INT8 (the paper's average is 16%).
    public let int8Share: Double
    /// Which W4Ax kernel to time: the one the runner picks for each M, or one forced.
    public enum Kernel: String, Sendable, CaseIterable { case auto, smallM = "small-m", largeM = "large-m" }
    public let kernel: Kernel
    /// The small-M kernel's shape, where fixed (nil fields: the dispatcher's choice).
    public let smallM: W4AxGemm.SmallMTuning

    public init(library: KernelLibrary, cublas: CuBLASLt?, int8Share: Double = 0.16, kernel: Kernel = .auto,
                smallM: W4AxGemm.SmallMTuning = W4AxGemm.SmallMTuning()) {
        self.library = library
        self.cublas = cublas
        self.int8Share = int8Share
        self.kernel = kernel
        self.smallM = smallM
    }

    public func run(shape: Shape, m: Int) throws -> Row {
        let context = library.context
        let stream = try context.makeStream()
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let blocks = (shape.k + 127) / 128
        let layout = try FMPQLayout(inputChannels: shape.k, blockSize: 128, int8Blocks: Int((int8Share * Double(blocks)).rounded()))
        let rotation = { (bytes: Int) in max(1, min(16, (3 * context.device.l2CacheBytes + bytes - 1) / bytes)) }

        // Ours: packed INT4 weights and fp16 scales (random bits: every nibble value occurs).
        let weightBytes = shape.n * layout.paddedChannels / 2
        let copies = rotation(weightBytes)
        var weights: [W4AxWeightsView] = []
        for _ in 0..<copies {
            let packed = try context.allocate(UInt8.self, count: weightBytes)
            try fillRandom(packed, on: stream) { random.bytes($0) }
            let scales = try context.allocate(Float16.self, count: (shape.n + 15) / 16 * 16 * blocks)
            try fillRandom(scales, on: stream) { n in (0..<n).map { _ in Float16(Float.random(in: 0.001...0.01, using: &random)) } }
            weights.append(W4AxWeightsView(packed: packed, scales: scales))
        }
        let x = (0..<m * shape.k).map { _ in Float.random(in: -1...1, using: &random) }
        let quantized = try QuantizedActivations(quantizing: x, tokens: m, layout: layout)
        let y = try context.allocate(BFloat16.self, count: m * shape.n)
        var gemm = try W4AxGemm(library: library)
        gemm.smallM = smallM
        // The kernel the runner would take for this M: small-M (packed) or large-M (tiled).
        let ours: Double
        let tiled = kernel == .largeM || (kernel == .auto && gemm.prefersTiled(tokens: m, layout: layout))
        if tiled {
            let activations = try W4AxTiledActivations(quantized, context: context)
            let workspace = try gemm.makeSplitKWorkspace(context: context, stream: stream)
            ours = try microsecondsPerCall(on: stream) { i in
                let w = weights[i % copies]
                try gemm.launch(activations, packed: w.packed, scales: w.scales, outputs: shape.n, into: y, workspace: workspace, on: stream)
            }
        } else {
            let activations = try W4AxActivations(quantized, context: context)
            ours = try microsecondsPerCall(on: stream) { i in
                let w = weights[i % copies]
                try gemm.launch(activations, packed: w.packed, scales: w.scales, outputs: shape.n, into: y, on: stream)
            }
        }
        // Bytes moved at least once: weights and scales, the activations in the kernel's format
        // (tiled: one int8 code per channel, rows padded to 128), the bf16 output.
        let activationBytes = tiled
            ? W4AxTiledActivations.codeCount(layout, tokens: m) + 4 * W4AxTiledActivations.scaleCount(layout, tokens: m)
            : m * (layout.int4Channels / 2 + layout.int8Channels + blocks * 4)
        let oursBytes = weightBytes + shape.n * blocks * 2 + activationBytes + m * shape.n * 2
        weights.removeAll()

        let bf16 = try cublas.map { try baseline($0, .bf16, shape: shape, m: m, stream: stream, random: &random, rotation: rotation) }
        let fp8 = try cublas.map { try baseline($0, .fp8e4m3, shape: shape, m: m, stream: stream, random: &random, rotation: rotation) }
        return Row(shape: shape, m: m, int8Blocks: layout.int8Blocks, blocks: blocks, ours: ours, bf16: bf16, fp8: fp8, oursBytes: oursBytes)
    }

    /// cuBLASLt's time: every algorithm its heuristic proposes is timed; the fastest counts.
    func baseline(
        _ lt: CuBLASLt, _ type: CuBLASLt.InputType, shape: Shape, m: Int, stream: CUDAStream,
        random: inout SplitMix64, rotation: (Int) -> Int
    ) throws -> Double {
        let context = library.context
        let plan = try CuBLASLt.Matmul(lt, m: m, n: shape.n, k: shape.k, inputType: type)
        let weightBytes = shape.n * shape.k * type.bytes
        let copies = rotation(weightBytes)
        var weights: [DeviceBuffer<UInt8>] = []
        for _ in 0..<copies {
            let w = try context.allocate(UInt8.self, count: weightBytes)
            try fillRandom(w, on: stream) { n in randomBytes(n, type, using: &random) }
            weights.append(w)
        }
        let x = try context.allocate(UInt8.self, count: m * shape.k * type.bytes)
        try fillRandom(x, on: stream) { n in randomBytes(n, type, using: &random) }
        let y = try context.allocate(UInt16.self, count: m * shape.n)
        let workspace = try context.allocate(UInt8.self, count: CuBLASLt.Matmul.workspaceBytes)
        var best = Double.infinity
        for algorithm in 0..<plan.algorithmCount {
            let time = try? microsecondsPerCall(on: stream, batches: 3) { i in
                try plan.run(algorithm: algorithm, x: x.pointer, w: weights[i % copies].pointer, y: y.pointer, workspace: workspace.pointer, on: stream)
            }
            if let time { best = min(best, time) }
        }
        guard best.isFinite else { throw CUDAError.invalidArgument("no cuBLASLt algorithm ran for \(shape.layer) M=\(m)") }
        return best
    }

    /// Random bf16 values in [-1, 1], or FP8 e4m3 bit patterns that are never NaN.
    func randomBytes(_ count: Int, _ type: CuBLASLt.InputType, using random: inout SplitMix64) -> [UInt8] {
        switch type {
        case .bf16:
            return randomBF16Bytes(count, using: &random)
        case .fp8e4m3:
            return random.bytes(count).map { $0 & 0x7F == 0x7F ? $0 ^ 0x01 : $0 }
        }
    }

    /// The printed table: ours, the two baselines and the ratios.
    public static func table(_ rows: [Row], device: String) -> String {
        var lines = ["W4Ax GEMM on \(device): ours (A4 + 16% A8 blocks, W4 g128, bf16 out) vs cuBLASLt bf16 and FP8 e4m3 (best of its heuristic's algorithms); microseconds per call"]
        lines.append(padded("shape", 22) + padded("M", 6) + padded("ours", 10) + padded("TFLOPS", 9) + padded("TB/s", 7)
            + padded("bf16", 10) + padded("fp8", 10) + padded("x bf16", 8) + "x fp8")
        for r in rows {
            let name = "\(r.shape.model) \(r.shape.layer)"
            lines.append(
                padded(name, 22) + padded("\(r.m)", 6) + padded(fixed(r.ours, 1), 10) + padded(fixed(r.oursTFLOPS, 1), 9)
                    + padded(fixed(r.oursTBps, 2), 7) + padded(r.bf16.map { fixed($0, 1) } ?? "-", 10)
                    + padded(r.fp8.map { fixed($0, 1) } ?? "-", 10) + padded(r.speedupOverBF16.map { fixed($0, 2) } ?? "-", 8)
                    + (r.speedupOverFP8.map { fixed($0, 2) } ?? "-"))
        }
        return lines.joined(separator: "\n")
    }
}

/// Device weights for timing, without a host copy (W4AxWeights uploads real weights).
struct W4AxWeightsView {
    let packed: DeviceBuffer<UInt8>
    let scales: DeviceBuffer<Float16>
}
