/// The exact reference of the W4Ax linear (DESIGN.md §2), which every GPU GEMM is tested
/// against:
///
///     Y[m, n] = sum over blocks b of  (A_b[m] . W_b[n])  *  (scale_a[m, b] * scale_w[n, b])
///
/// where each block's dot product is an exact int32 and the promotion to fp32 happens once
/// per block, blocks in order. Y is [tokens, outputs], fp32.
public enum W4AxLinear {
    public static func reference(_ a: QuantizedActivations, _ w: Int4Weights) throws -> [Float] {
        try referenceWithMagnitude(a, w).y
    }

    /// The reference and, per output, the sum of the absolute per-block terms: the scale of
    /// the fp32 rounding error that any summation order may add (tolerances use it).
    public static func referenceWithMagnitude(_ a: QuantizedActivations, _ w: Int4Weights) throws -> (y: [Float], magnitude: [Float]) {
        guard a.layout == w.layout else {
            throw QuantError.shapeMismatch("activation layout \(a.layout) differs from weight layout \(w.layout)")
        }
        let layout = a.layout, bs = layout.blockSize
        var y = [Float](repeating: 0, count: a.tokens * w.outputs)
        var magnitude = [Float](repeating: 0, count: a.tokens * w.outputs)
        // Widen the codes once: [tokens, Kp] and [outputs, Kp] as Int32.
        let kp = layout.paddedChannels
        var ac = [Int32](repeating: 0, count: a.tokens * kp)
        for t in 0..<a.tokens { for k in 0..<kp { ac[t * kp + k] = a.code(token: t, channel: k) } }
        var wc = [Int32](repeating: 0, count: w.outputs * kp)
        for n in 0..<w.outputs { for k in 0..<kp { wc[n * kp + k] = w.code(output: n, channel: k) } }
        for m in 0..<a.tokens {
            for n in 0..<w.outputs {
                var sum: Float = 0, size: Float = 0
                for b in 0..<layout.blockCount {
                    var dot: Int32 = 0
                    for k in b * bs..<(b + 1) * bs { dot &+= ac[m * kp + k] * wc[n * kp + k] }
                    let term = Float(dot) * (a.scales[m * layout.blockCount + b] * w.scale(output: n, block: b))
                    sum += term
                    size += abs(term)
                }
                y[m * w.outputs + n] = sum
                magnitude[m * w.outputs + n] = size
            }
        }
        return (y, magnitude)
    }
}
