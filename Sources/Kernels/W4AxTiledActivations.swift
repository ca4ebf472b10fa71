import CUDA
import Quant

/// FMPQ activations in the large-M GEMM's format (w4ax_gemm_sm90.cu; 128-channel blocks only).
///
/// Every (128-token tile, K-block) is one 16 KiB image of the GEMM's shared-memory tile, so a
/// single bulk copy moves it: row r is token r of the tile, 128 int8 codes (A4 blocks widened
/// to bytes, their values still in [-7, 7]); inside a row, byte p = 32s + 16h + 4u + j holds
/// channel 32u + 8s + 4h + j of the block (the channel W4AxWeights binds to k index
/// 16h + 4u + j of k32 step s), and 16-byte chunk c of row r is stored at chunk c ^ (r % 8)
/// (wgmma's 128-byte swizzle). Scales are [tile][block][128 tokens]. Padding rows are zero.
public struct W4AxTiledActivations: Sendable {
    public static let tileTokens = 128
    public static let tileBytes = tileTokens * 128

    public let layout: FMPQLayout
    public let tokens: Int
    /// [tiles][blockCount][128 rows][128 bytes]
    public let codes: DeviceBuffer<Int8>
    /// [tiles][blockCount][128 rows]
    public let scales: DeviceBuffer<Float>

    public var tiles: Int { Self.tiles(tokens: tokens) }
    /// The rows the quantize kernels write: `tokens` rounded up to whole tiles.
    public var paddedTokens: Int { tiles * Self.tileTokens }

    public static func tiles(tokens: Int) -> Int { (tokens + tileTokens - 1) / tileTokens }
    public static func codeCount(_ layout: FMPQLayout, tokens: Int) -> Int { tiles(tokens: tokens) * layout.blockCount * tileBytes }
    public static func scaleCount(_ layout: FMPQLayout, tokens: Int) -> Int { tiles(tokens: tokens) * layout.blockCount * tileTokens }

    /// The format exists for 128-channel blocks only (one K-block is one 128-byte row).
    public static func supports(_ layout: FMPQLayout) -> Bool { layout.blockSize == 128 }

    /// Uninitialised buffers for `tokens` rows, to be written by the tiled quantize kernels.
    public init(layout: FMPQLayout, tokens: Int, context: CUDAContext) throws {
        try self.init(
            layout: layout, tokens: tokens,
            codes: context.allocate(Int8.self, count: Self.codeCount(layout, tokens: tokens)),
            scales: context.allocate(Float.self, count: Self.scaleCount(layout, tokens: tokens)))
    }

    /// Activations over existing buffers of exactly the size `tokens` rows of `layout` need
    /// (scratch shared by linears of different layouts: views made with `DeviceBuffer.prefix`).
    public init(layout: FMPQLayout, tokens: Int, codes: DeviceBuffer<Int8>, scales: DeviceBuffer<Float>) throws {
        guard Self.supports(layout) else {
            throw QuantError.shapeMismatch("the tiled activation format needs 128-channel blocks, not \(layout)")
        }
        guard tokens > 0, codes.count == Self.codeCount(layout, tokens: tokens), scales.count == Self.scaleCount(layout, tokens: tokens) else {
            throw QuantError.shapeMismatch("tiled activation buffers \(codes.count)/\(scales.count) for \(tokens) tokens of \(layout)")
        }
        self.layout = layout
        self.tokens = tokens
        self.codes = codes
        self.scales = scales
    }

    /// `activations` tiled on the host and uploaded (checks and benchmarks).
    public init(_ activations: QuantizedActivations, context: CUDAContext) throws {
        let image = try Self.image(of: activations)
        try self.init(layout: activations.layout, tokens: activations.tokens, context: context)
        try codes.copy(from: image.codes)
        try scales.copy(from: image.scales)
    }

    /// The tiled image of `activations`: what the tiled quantize kernels write for the same codes.
    public static func image(of activations: QuantizedActivations) throws -> (codes: [Int8], scales: [Float]) {
        let layout = activations.layout
        guard supports(layout) else {
            throw QuantError.shapeMismatch("the tiled activation format needs 128-channel blocks, not \(layout)")
        }
        let blocks = layout.blockCount
        var codes = [Int8](repeating: 0, count: codeCount(layout, tokens: activations.tokens))
        var scales = [Float](repeating: 0, count: scaleCount(layout, tokens: activations.tokens))
        for token in 0..<activations.tokens {
            let row = token % tileTokens
            for block in 0..<blocks {
                let image = (token / tileTokens) * blocks + block
                scales[image * tileTokens + row] = activations.scales[token * blocks + block]
                for channel in 0..<128 {
                    let code = activations.code(token: token, channel: block * 128 + channel)
                    codes[image * tileBytes + row * 128 + byteOffset(row: row, channel: channel)] = Int8(code)
                }
            }
        }
        return (codes, scales)
    }

    /// Where channel `channel` (0..<128) of a K-block lies in row `row` of a tile image.
    public static func byteOffset(row: Int, channel: Int) -> Int {
        let u = channel / 32, s = channel % 32 / 8, h = channel % 8 / 4, j = channel % 4
        let p = 32 * s + 16 * h + 4 * u + j
        return ((p / 16) ^ (row % 8)) * 16 + p % 16
    }
}
