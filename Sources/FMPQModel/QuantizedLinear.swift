import Quant

/// One FMPQ linear ready for the CPU forward pass: its permutation, its layout and its INT4
/// weights dequantized once to fp32 ([outputs, paddedChannels], permuted order).
///
/// NOTES: the product is computed as dequantized activations × dequantized weights in fp32
/// (the backend's SIMD matmul). Each term code_a·scale_a·code_w·scale_w is the reference's
/// term of `W4AxLinear` (int32 dot per block, promoted with scale_a·scale_w) up to fp32
/// rounding and summation order, so the two agree within fp32 rounding of the sum of |terms|
/// (the quantized-forward test checks this on a real layer); the codes and scales themselves
/// are bit-identical to `QuantizedActivations` / `Int4Weights`.
public struct QuantizedLinear: Sendable {
    public let layout: FMPQLayout
    /// [inputChannels]: original channel at each permuted position.
    public let permutation: [Int32]
    public let outputs: Int
    /// [outputs, layout.paddedChannels]
    public let weights: [Float]

    public init(weights int4: Int4Weights, permutation: FMPQPermutation) throws {
        guard int4.layout == permutation.layout else {
            throw QuantError.shapeMismatch("weight layout \(int4.layout) differs from permutation layout \(permutation.layout)")
        }
        layout = int4.layout
        self.permutation = permutation.permutation
        outputs = int4.outputs
        weights = int4.dequantized()
    }

    /// How a linear's input is quantized before the product.
    public enum Activations: String, Sendable, CaseIterable {
        /// A4 / A8 blocks as the layout says, per-(token, block) symmetric scales (FMPQ).
        case fmpq
        /// Not quantized (weight-only W4A16).
        case a16
    }

    /// Permutes `x` ([tokens, inputChannels], original order) into `out` ([tokens,
    /// paddedChannels], zero padding), rotates the layout's rotated blocks and, for `.fmpq`, replaces each (token, block) by the
    /// values of its codes: exactly `QuantizedActivations(quantizing:).dequantized()`.
    public func prepare(_ x: UnsafePointer<Float>, tokens: Int, activations: Activations, into out: UnsafeMutablePointer<Float>) {
        let k = layout.inputChannels, kp = layout.paddedChannels, bs = layout.blockSize
        for t in 0..<tokens {
            let row = out + t * kp, source = x + t * k
            for p in 0..<k { row[p] = source[Int(permutation[p])] }
            for p in k..<kp { row[p] = 0 }
            // Rotated blocks (weights W·H / n) take H·x, quantized or not.
            for b in 0..<layout.blockCount where layout.rotates(block: b) { BlockHadamard.transform(row + b * bs, count: bs) }
            guard activations == .fmpq else { continue }
            for b in 0..<layout.blockCount {
                let block = row + b * bs
                let bits = layout.isInt8(block: b) ? 8 : 4
                var absmax: Float = 0
                for i in 0..<bs { absmax = max(absmax, abs(block[i])) }
                let scale = SymmetricQuantizer.scale(absmax: absmax, bits: bits, clip: layout.clip(block: b))
                for i in 0..<bs { block[i] = Float(SymmetricQuantizer.code(block[i], scale: scale, bits: bits)) * scale }
            }
        }
    }

    /// y = Q(x) · Ŵᵀ for `tokens` rows of `x` ([tokens, inputChannels]); a plain, single-threaded
    /// version of what `QuantizedModelHooks` runs (tests compare it with `W4AxLinear.reference`).
    public func apply(_ x: [Float], tokens: Int, activations: Activations = .fmpq) -> [Float] {
        let kp = layout.paddedChannels
        var prepared = [Float](repeating: 0, count: tokens * kp)
        x.withUnsafeBufferPointer { xs in prepared.withUnsafeMutableBufferPointer { prepare(xs.baseAddress!, tokens: tokens, activations: activations, into: $0.baseAddress!) } }
        var y = [Float](repeating: 0, count: tokens * outputs)
        for t in 0..<tokens {
            for n in 0..<outputs {
                var sum: Float = 0
                for i in 0..<kp { sum += prepared[t * kp + i] * weights[n * kp + i] }
                y[t * outputs + n] = sum
            }
        }
        return y
    }
}
