/// Activations of one linear layer in FMPQ form, for `tokens` rows (already permuted).
///
/// Per (token, block) symmetric scales (A4 blocks clipped by `layout.int4Clip`); the A4 region
/// packs two codes per byte.
public struct QuantizedActivations: Sendable, Equatable {
    public let layout: FMPQLayout
    public let tokens: Int
    /// [tokens, layout.int4Channels / 2]: INT4 codes, two per byte (see `Nibbles`).
    public var int4: [UInt8]
    /// [tokens, layout.int8Channels]: INT8 codes.
    public var int8: [Int8]
    /// [tokens, layout.blockCount]: the scale of each (token, block).
    public var scales: [Float]

    /// Codes and scales made elsewhere (a GPU kernel's output), checked for size.
    public init(layout: FMPQLayout, tokens: Int, int4: [UInt8], int8: [Int8], scales: [Float]) throws {
        guard int4.count == tokens * layout.int4Channels / 2, int8.count == tokens * layout.int8Channels,
              scales.count == tokens * layout.blockCount
        else {
            throw QuantError.shapeMismatch("\(int4.count) + \(int8.count) codes and \(scales.count) scales for \(tokens) tokens of \(layout)")
        }
        self.layout = layout
        self.tokens = tokens
        self.int4 = int4
        self.int8 = int8
        self.scales = scales
    }

    /// Quantizes `x` ([tokens, inputChannels], row-major, in the permuted channel order).
    public init(quantizing x: [Float], tokens: Int, layout: FMPQLayout) throws {
        guard tokens >= 0, x.count == tokens * layout.inputChannels else {
            throw QuantError.shapeMismatch("\(x.count) activations for \(tokens) tokens of \(layout.inputChannels) channels")
        }
        self.layout = layout
        self.tokens = tokens
        let bs = layout.blockSize
        int4 = [UInt8](repeating: 0, count: tokens * layout.int4Channels / 2)
        int8 = [Int8](repeating: 0, count: tokens * layout.int8Channels)
        scales = [Float](repeating: 0, count: tokens * layout.blockCount)
        var block = [Float](repeating: 0, count: bs)
        var codes = [Int8](repeating: 0, count: bs)
        for t in 0..<tokens {
            for b in 0..<layout.blockCount {
                // The block's values; channels past K are zero padding.
                for i in 0..<bs {
                    let k = b * bs + i
                    block[i] = k < layout.inputChannels ? x[t * layout.inputChannels + k] : 0
                }
                if layout.rotates(block: b) { BlockHadamard.transform(&block, count: bs) }
                let bits = layout.isInt8(block: b) ? 8 : 4
                let scale = block.withUnsafeBufferPointer { values in
                    codes.withUnsafeMutableBufferPointer { SymmetricQuantizer.quantize(values, bits: bits, clip: layout.clip(block: b), into: $0) }
                }
                scales[t * layout.blockCount + b] = scale
                if bits == 8 {
                    let base = t * layout.int8Channels + (b - layout.int4Blocks) * bs
                    for i in 0..<bs { int8[base + i] = codes[i] }
                } else {
                    let base = t * layout.int4Channels / 2 + b * bs / 2
                    for i in 0..<bs / 2 { int4[base + i] = Nibbles.pack(low: codes[2 * i], high: codes[2 * i + 1]) }
                }
            }
        }
    }

    /// The integer code of (token, channel k) of the padded K, whatever its region.
    public func code(token t: Int, channel k: Int) -> Int32 {
        if k < layout.int4Channels {
            let byte = int4[t * layout.int4Channels / 2 + k / 2]
            return Int32(k % 2 == 0 ? Nibbles.low(byte) : Nibbles.high(byte))
        }
        return Int32(int8[t * layout.int8Channels + k - layout.int4Channels])
    }

    /// The real value the codes stand for, [tokens, paddedChannels] (rotated blocks as H·x).
    public func dequantized() -> [Float] {
        let kp = layout.paddedChannels
        var out = [Float](repeating: 0, count: tokens * kp)
        for t in 0..<tokens {
            for k in 0..<kp {
                out[t * kp + k] = Float(code(token: t, channel: k)) * scales[t * layout.blockCount + k / layout.blockSize]
            }
        }
        return out
    }
}
