/// The weight of one linear layer in INT4: symmetric, one scale per (output channel, block of
/// K), rows in the same permuted channel order as the activations (DESIGN.md §2).
public struct Int4Weights: Sendable, Equatable {
    public let layout: FMPQLayout
    /// N, the output channels.
    public let outputs: Int
    /// [outputs, layout.paddedChannels / 2]: codes, two per byte (see `Nibbles`).
    public var codes: [UInt8]
    /// [outputs, layout.blockCount]: the scale of each (output channel, block).
    public var scales: [Float16]

    public init(layout: FMPQLayout, outputs: Int, codes: [UInt8], scales: [Float16]) throws {
        guard outputs > 0, codes.count == outputs * layout.paddedChannels / 2, scales.count == outputs * layout.blockCount else {
            throw QuantError.shapeMismatch("INT4 weights of \(codes.count) bytes and \(scales.count) scales for \(outputs) x \(layout.paddedChannels)")
        }
        self.layout = layout
        self.outputs = outputs
        self.codes = codes
        self.scales = scales
    }

    /// Round-to-nearest quantization of `w` ([outputs, inputChannels], row-major). The scale
    /// is rounded to fp16 first and the codes are computed against the rounded scale, so
    /// dequantization uses exactly the scale that is stored.
    public init(roundingToNearest w: [Float], outputs: Int, layout: FMPQLayout) throws {
        guard outputs > 0, w.count == outputs * layout.inputChannels else {
            throw QuantError.shapeMismatch("\(w.count) weights for \(outputs) x \(layout.inputChannels)")
        }
        let k = layout.inputChannels, kp = layout.paddedChannels, bs = layout.blockSize
        var codes = [UInt8](repeating: 0, count: outputs * kp / 2)
        var scales = [Float16](repeating: 0, count: outputs * layout.blockCount)
        var q = [Int8](repeating: 0, count: kp)
        for n in 0..<outputs {
            for b in 0..<layout.blockCount {
                var absmax: Float = 0
                for i in b * bs..<min((b + 1) * bs, k) { absmax = max(absmax, abs(w[n * k + i])) }
                let scale = Float16(SymmetricQuantizer.scale(absmax: absmax, bits: 4))
                scales[n * layout.blockCount + b] = scale
                for i in b * bs..<(b + 1) * bs {
                    q[i] = i < k ? SymmetricQuantizer.code(w[n * k + i], scale: Float(scale), bits: 4) : 0
                }
            }
            for i in 0..<kp / 2 { codes[n * kp / 2 + i] = Nibbles.pack(low: q[2 * i], high: q[2 * i + 1]) }
        }
        try self.init(layout: layout, outputs: outputs, codes: codes, scales: scales)
    }

    public func code(output n: Int, channel k: Int) -> Int32 {
        let byte = codes[n * layout.paddedChannels / 2 + k / 2]
        return Int32(k % 2 == 0 ? Nibbles.low(byte) : Nibbles.high(byte))
    }

    public func scale(output n: Int, block b: Int) -> Float { Float(scales[n * layout.blockCount + b]) }

    /// The real weights the codes stand for, [outputs, layout.paddedChannels] (padding is zero).
    public func dequantized() -> [Float] {
        let kp = layout.paddedChannels
        var out = [Float](repeating: 0, count: outputs * kp)
        for n in 0..<outputs {
            for k in 0..<kp { out[n * kp + k] = Float(code(output: n, channel: k)) * scale(output: n, block: k / layout.blockSize) }
        }
        return out
    }
}
