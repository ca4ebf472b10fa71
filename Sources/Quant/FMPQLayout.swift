/// How FMPQ lays out and quantizes the K (input-channel) dimension of one linear layer.
///
/// K is zero-padded to a whole number of blocks. After the layer's channel permutation,
/// the first `int4Blocks` blocks hold INT4 activations and the last `int8Blocks` hold the
/// outlier channels in INT8 (DESIGN.md §2), so a GEMM sees an A4 region then an A8 region.
public struct FMPQLayout: Sendable, Equatable, Hashable, Codable {
    /// Input channels of the layer before padding.
    public let inputChannels: Int
    /// Channels per quantization block: 128 (the paper) or 64.
    public let blockSize: Int
    /// Blocks quantized to INT8 (the outlier blocks), at the end of K.
    public let int8Blocks: Int
    /// Clipping of the A4 blocks' dynamic scale: scale = (absmax * int4Clip) / 7, values past
    /// the clipped range saturate at +-7. 1 is plain abs-max scaling; below 1 trades the rare
    /// largest values of a block for finer steps for the rest (Atom and QuaRot clip A4 the same
    /// way). A8 blocks are never clipped. (SmolLM2, W4AxKV4: 1.0 42.67, 0.9 41.32, 0.8 40.15,
    /// 0.7 43.90, bench/results/accuracy-smollm2.md.)
    public let int4Clip: Float
    /// Which blocks are Walsh-Hadamard rotated before they are quantized (`BlockHadamard`:
    /// activations H·x, weights W·H / n). A partial last block never is.
    public let rotation: BlockRotation

    public init(inputChannels: Int, blockSize: Int = 128, int8Blocks: Int, int4Clip: Float = 1, rotation: BlockRotation = .none) throws {
        guard inputChannels > 0 else { throw QuantError.invalidLayout("input channels must be positive, got \(inputChannels)") }
        guard blockSize == 64 || blockSize == 128 else {
            throw QuantError.invalidLayout("block size must be 64 or 128, got \(blockSize)")
        }
        let blocks = (inputChannels + blockSize - 1) / blockSize
        guard (0...blocks).contains(int8Blocks) else {
            throw QuantError.invalidLayout("\(int8Blocks) INT8 blocks out of \(blocks)")
        }
        guard int4Clip > 0, int4Clip <= 1 else {
            throw QuantError.invalidLayout("the A4 clip ratio must be in (0, 1], got \(int4Clip)")
        }
        self.inputChannels = inputChannels
        self.blockSize = blockSize
        self.int8Blocks = int8Blocks
        self.int4Clip = int4Clip
        self.rotation = rotation
    }

    /// The same blocks with another A4 clip ratio and rotation.
    public func with(int4Clip clip: Float, rotation: BlockRotation) throws -> FMPQLayout {
        try FMPQLayout(inputChannels: inputChannels, blockSize: blockSize, int8Blocks: int8Blocks, int4Clip: clip, rotation: rotation)
    }

    /// The clip ratio of block `b`'s scale (1 for INT8 blocks).
    public func clip(block b: Int) -> Float { isInt8(block: b) ? 1 : int4Clip }

    /// Whether block `b` is rotated: one of `rotation`'s blocks, wholly inside K.
    public func rotates(block b: Int) -> Bool { b < rotationBlocks && (b + 1) * blockSize <= inputChannels }

    /// The leading blocks `rotation` covers (the kernels rotate those wholly inside K).
    public var rotationBlocks: Int {
        switch rotation {
        case .none: 0
        case .int4: int4Blocks
        case .all: blockCount
        }
    }

    /// K rounded up to whole blocks; channels past `inputChannels` are zero.
    public var paddedChannels: Int { blockCount * blockSize }
    public var blockCount: Int { (inputChannels + blockSize - 1) / blockSize }
    public var int4Blocks: Int { blockCount - int8Blocks }
    /// Channels in the A4 region (stored two per byte).
    public var int4Channels: Int { int4Blocks * blockSize }
    /// Channels in the A8 region.
    public var int8Channels: Int { int8Blocks * blockSize }
    /// Fraction of blocks in INT8 (the paper: under 20%, 16% on average).
    public var int8Share: Double { Double(int8Blocks) / Double(blockCount) }
    /// Whether block `b` is an INT8 block.
    public func isInt8(block b: Int) -> Bool { b >= int4Blocks }
}

/// Which blocks of an FMPQ layout are Hadamard rotated (`BlockHadamard`).
public enum BlockRotation: String, Sendable, Equatable, Hashable, Codable, CaseIterable {
    /// None: the paper's FMPQ.
    case none
    /// The A4 blocks (FMPQ's default here: SmolLM2 W4AxKV4 34.84 against 40.15 unrotated,
    /// bench/results/accuracy-smollm2.md); rotating the A8 outlier blocks as well did not help
    /// (35.13).
    case int4
    /// Every block, A8 ones too (the rotated W4A8 baseline, as QServe rotates).
    case all
}

public enum QuantError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidLayout(String)
    case shapeMismatch(String)

    public var description: String {
        switch self {
        case let .invalidLayout(message): return "invalid FMPQ layout: \(message)"
        case let .shapeMismatch(message): return "shape mismatch: \(message)"
        }
    }
}
