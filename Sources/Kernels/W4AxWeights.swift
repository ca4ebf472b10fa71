import CUDA
import Quant

/// INT4 weights on the GPU in the layout of w4ax_gemm.cu, made once at load time.
public struct W4AxWeights: Sendable {
    public let layout: FMPQLayout
    /// N, the output channels (the device copy is padded to whole 16-row tiles with zeros).
    public let outputs: Int
    /// [n_tile][k_block][chunk][lane][16 bytes]; see w4ax_gemm.cu.
    public let packed: DeviceBuffer<UInt8>
    /// [paddedOutputs, blockCount] fp16 scales; padding rows are zero.
    public let scales: DeviceBuffer<Float16>

    public var paddedOutputs: Int { (outputs + 15) / 16 * 16 }

    public init(_ weights: Int4Weights, context: CUDAContext) throws {
        layout = weights.layout
        outputs = weights.outputs
        let host = W4AxWeights.pack(weights)
        packed = try context.allocate(UInt8.self, count: host.count)
        try packed.copy(from: host)
        var paddedScales = weights.scales
        paddedScales += [Float16](repeating: 0, count: ((outputs + 15) / 16 * 16 - outputs) * layout.blockCount)
        scales = try context.allocate(Float16.self, count: paddedScales.count)
        try scales.copy(from: paddedScales)
    }

    /// The kernel layout of `weights`: for each 16-row tile, K-block, 64-channel chunk and
    /// lane, two k32 steps of two words; word0's nibble 2j is W[g][k0 + 4t + j] and nibble
    /// 2j + 1 is W[g + 8][k0 + 4t + j]; word1 is the same at k0 + 16 (g = lane / 4, t = lane % 4).
    public static func pack(_ weights: Int4Weights) -> [UInt8] {
        let layout = weights.layout
        let tiles = (weights.outputs + 15) / 16
        let kp = layout.paddedChannels
        var out = [UInt8](repeating: 0, count: tiles * 16 * kp / 2)
        func code(_ row: Int, _ k: Int) -> UInt8 {
            row < weights.outputs ? UInt8(truncatingIfNeeded: weights.code(output: row, channel: k)) & 0x0F : 0
        }
        var offset = 0
        for tile in 0..<tiles {
            for k64 in stride(from: 0, to: kp, by: 64) {  // blocks are whole chunks, in order
                for lane in 0..<32 {
                    let g = lane / 4, t = lane % 4
                    for step in 0..<2 {
                        for half in 0..<2 {  // word0 then word1
                            let k0 = k64 + step * 32 + half * 16 + 4 * t
                            var word: UInt32 = 0
                            for j in 0..<4 {
                                word |= UInt32(code(tile * 16 + g, k0 + j)) << (8 * j)
                                word |= UInt32(code(tile * 16 + g + 8, k0 + j)) << (8 * j + 4)
                            }
                            for byte in 0..<4 { out[offset + byte] = UInt8(truncatingIfNeeded: word >> (8 * byte)) }
                            offset += 4
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
