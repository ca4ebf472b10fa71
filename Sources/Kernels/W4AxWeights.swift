import CUDA
import Quant

/// INT4 weights on the GPU in the layout of w4ax_gemm.cu, made once at load time.
public struct W4AxWeights: Sendable {
    public let layout: FMPQLayout
    /// N, the output channels (the device copy is padded to whole 16-row tiles with zeros).
    public let outputs: Int
    /// [k_block][n_tile][chunk][lane][16 bytes]; see w4ax_gemm.cu.
    public let packed: DeviceBuffer<UInt8>
    /// fp16 scales in the tile layout [k_block][n_tile][16 rows]; padding rows are zero.
    public let scales: DeviceBuffer<Float16>

    public var paddedOutputs: Int { (outputs + 15) / 16 * 16 }

    public init(_ weights: Int4Weights, context: CUDAContext) throws {
        layout = weights.layout
        outputs = weights.outputs
        let host = W4AxWeights.pack(weights)
        packed = try context.allocate(UInt8.self, count: host.count)
        try packed.copy(from: host)
        let tiledScales = W4AxWeights.packScales(weights)
        scales = try context.allocate(Float16.self, count: tiledScales.count)
        try scales.copy(from: tiledScales)
    }

    /// Weights already in the kernel's layout on the device (synthetic models made on the GPU).
    public init(layout: FMPQLayout, outputs: Int, packed: DeviceBuffer<UInt8>, scales: DeviceBuffer<Float16>) throws {
        let tiles = (outputs + 15) / 16
        guard outputs > 0, packed.count == tiles * 16 * layout.paddedChannels / 2, scales.count == tiles * 16 * layout.blockCount else {
            throw QuantError.shapeMismatch("W4Ax weights of \(packed.count) bytes and \(scales.count) scales for \(outputs) x \(layout.paddedChannels)")
        }
        self.layout = layout
        self.outputs = outputs
        self.packed = packed
        self.scales = scales
    }

    /// The scales in the kernel's tile layout [k_block][n_tile][16 rows], zero past N.
    public static func packScales(_ weights: Int4Weights) -> [Float16] {
        let tiles = (weights.outputs + 15) / 16, blocks = weights.layout.blockCount
        var out = [Float16](repeating: 0, count: blocks * tiles * 16)
        for block in 0..<blocks {
            for row in 0..<weights.outputs {
                out[(block * tiles + row / 16) * 16 + row % 16] = weights.scales[row * blocks + block]
            }
        }
        return out
    }

    /// The kernel layout of `weights` (w4ax_gemm.cu): [k_block][n_tile][chunk][lane][16 bytes].
    /// A chunk is two k32 steps s; each step is two words h; word h of lane (g = lane / 4,
    /// t = lane % 4) holds in nibble 2j the code W[g][c] and in nibble 2j + 1 the code
    /// W[g + 8][c], for the channel c = (BS/4) t + 8 s + 4 h + j of the K-block.
    public static func pack(_ weights: Int4Weights) -> [UInt8] {
        let layout = weights.layout
        let bs = layout.blockSize
        let tiles = (weights.outputs + 15) / 16
        var out = [UInt8](repeating: 0, count: tiles * 16 * layout.paddedChannels / 2)
        func code(_ row: Int, _ k: Int) -> UInt32 {
            row < weights.outputs ? UInt32(UInt8(truncatingIfNeeded: weights.code(output: row, channel: k)) & 0x0F) : 0
        }
        var offset = 0
        for block in 0..<layout.blockCount {
            for tile in 0..<tiles {
                for chunk in 0..<bs / 64 {
                    for lane in 0..<32 {
                        let g = lane / 4, t = lane % 4
                        for step in 2 * chunk..<2 * chunk + 2 {
                            for h in 0..<2 {
                                let c0 = block * bs + (bs / 4) * t + 8 * step + 4 * h
                                var word: UInt32 = 0
                                for j in 0..<4 {
                                    word |= code(tile * 16 + g, c0 + j) << (8 * j)
                                    word |= code(tile * 16 + g + 8, c0 + j) << (8 * j + 4)
                                }
                                for byte in 0..<4 { out[offset + byte] = UInt8(truncatingIfNeeded: word >> (8 * byte)) }
                                offset += 4
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// FMPQ activations on the GPU, in the layout of `QuantizedActivations`.
public struct W4AxActivations: Sendable {
    public let layout: FMPQLayout
    public let tokens: Int
    /// [tokens, int4Channels / 2], two codes per byte.
    public let int4: DeviceBuffer<UInt8>
    /// [tokens, int8Channels].
    public let int8: DeviceBuffer<Int8>
    /// [tokens, blockCount].
    public let scales: DeviceBuffer<Float>

    /// Uninitialised buffers for `tokens` rows, to be written by the quantize kernels.
    public init(layout: FMPQLayout, tokens: Int, context: CUDAContext) throws {
        self.layout = layout
        self.tokens = tokens
        int4 = try context.allocate(UInt8.self, count: tokens * layout.int4Channels / 2)
        int8 = try context.allocate(Int8.self, count: tokens * layout.int8Channels)
        scales = try context.allocate(Float.self, count: tokens * layout.blockCount)
    }

    /// Activations over existing buffers of exactly `tokens` rows of `layout` (scratch shared by
    /// linears of different layouts: views made with `DeviceBuffer.prefix`).
    public init(layout: FMPQLayout, tokens: Int, int4: DeviceBuffer<UInt8>, int8: DeviceBuffer<Int8>, scales: DeviceBuffer<Float>) throws {
        guard int4.count == tokens * layout.int4Channels / 2, int8.count == tokens * layout.int8Channels,
              scales.count == tokens * layout.blockCount
        else {
            throw QuantError.shapeMismatch("activation buffers \(int4.count)/\(int8.count)/\(scales.count) for \(tokens) tokens of \(layout)")
        }
        self.init(unchecked: layout, tokens: tokens, int4: int4, int8: int8, scales: scales)
    }

    private init(unchecked layout: FMPQLayout, tokens: Int, int4: DeviceBuffer<UInt8>, int8: DeviceBuffer<Int8>, scales: DeviceBuffer<Float>) {
        self.layout = layout
        self.tokens = tokens
        self.int4 = int4
        self.int8 = int8
        self.scales = scales
    }

    /// The first `tokens` rows, sharing this buffer's memory (scratch sized for the largest step).
    public func prefix(tokens: Int) -> W4AxActivations {
        precondition(tokens <= self.tokens, "W4AxActivations.prefix beyond its rows")
        return W4AxActivations(
            unchecked: layout, tokens: tokens, int4: int4.prefix(tokens * layout.int4Channels / 2),
            int8: int8.prefix(tokens * layout.int8Channels), scales: scales.prefix(tokens * layout.blockCount))
    }

    /// The contents, downloaded (after all work on the legacy default stream).
    public func toHost() throws -> QuantizedActivations {
        try QuantizedActivations(layout: layout, tokens: tokens, int4: int4.toArray(), int8: int8.toArray(), scales: scales.toArray())
    }

    public init(_ activations: QuantizedActivations, context: CUDAContext) throws {
        layout = activations.layout
        tokens = activations.tokens
        int4 = try context.allocate(UInt8.self, count: activations.int4.count)
        int8 = try context.allocate(Int8.self, count: activations.int8.count)
        scales = try context.allocate(Float.self, count: activations.scales.count)
        try int4.copy(from: activations.int4)
        try int8.copy(from: activations.int8)
        try scales.copy(from: activations.scales)
    }
}
