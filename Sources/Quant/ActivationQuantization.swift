#if canImport(Glibc)
import Glibc
#endif

/// The exact references of the fused activation-quantization kernels (fmpq_quantize.cu): what
/// produces a linear layer's input, then the FMPQ permutation, then `QuantizedActivations`.
///
/// `permutation[p]` is the original channel at permuted position p (length K); positions past
/// K are zero padding. Inputs are row-major [tokens, channels] and, like the GPU's bf16 inputs,
/// should be bf16-representable for the comparison to be meaningful.
public enum ActivationQuantization {
    /// RMSNorm(x) * gamma, then permute and quantize. The mean square is summed in Double (the
    /// GPU's fp32 tree sum differs from it by rounding only); the rest is fp32 like the GPU.
    public static func rmsNorm(
        _ x: [Float], tokens: Int, gamma: [Float], eps: Float, permutation: [Int32], layout: FMPQLayout
    ) throws -> QuantizedActivations {
        let k = layout.inputChannels
        try check(x.count == tokens * k && gamma.count == k, "RMSNorm input \(x.count), gamma \(gamma.count) for \(tokens) x \(k)")
        try checkPermutation(permutation, layout)
        var permuted = [Float](repeating: 0, count: tokens * k)
        for t in 0..<tokens {
            var squares = 0.0
            for c in 0..<k { squares += Double(x[t * k + c]) * Double(x[t * k + c]) }
            let inv = 1 / (Float(squares) / Float(k) + eps).squareRoot()
            for p in 0..<k {
                let c = Int(permutation[p])
                permuted[t * k + p] = x[t * k + c] * inv * gamma[c]
            }
        }
        return try QuantizedActivations(quantizing: permuted, tokens: tokens, layout: layout)
    }

    /// silu(gate) * up for gateUp = [tokens, 2F] (gate in the first F columns), then permute
    /// and quantize; layout.inputChannels is F.
    public static func swiGLU(
        _ gateUp: [Float], tokens: Int, permutation: [Int32], layout: FMPQLayout
    ) throws -> QuantizedActivations {
        let f = layout.inputChannels
        try check(gateUp.count == tokens * 2 * f, "SwiGLU input \(gateUp.count) for \(tokens) x 2 x \(f)")
        try checkPermutation(permutation, layout)
        var permuted = [Float](repeating: 0, count: tokens * f)
        for t in 0..<tokens {
            for p in 0..<f {
                let c = Int(permutation[p])
                let gate = gateUp[t * 2 * f + c], up = gateUp[t * 2 * f + f + c]
                permuted[t * f + p] = gate / (1 + expf(-gate)) * up
            }
        }
        return try QuantizedActivations(quantizing: permuted, tokens: tokens, layout: layout)
    }

    /// x permuted, then quantized (the input of o_proj).
    public static func permuted(_ x: [Float], tokens: Int, permutation: [Int32], layout: FMPQLayout) throws -> QuantizedActivations {
        let k = layout.inputChannels
        try check(x.count == tokens * k, "input \(x.count) for \(tokens) x \(k)")
        try checkPermutation(permutation, layout)
        var permuted = [Float](repeating: 0, count: tokens * k)
        for t in 0..<tokens { for p in 0..<k { permuted[t * k + p] = x[t * k + Int(permutation[p])] } }
        return try QuantizedActivations(quantizing: permuted, tokens: tokens, layout: layout)
    }

    private static func checkPermutation(_ permutation: [Int32], _ layout: FMPQLayout) throws {
        try check(isPermutation(permutation, count: layout.inputChannels), "not a permutation of \(layout.inputChannels) channels")
    }

    public static func isPermutation(_ permutation: [Int32], count: Int) -> Bool {
        guard permutation.count == count else { return false }
        var seen = [Bool](repeating: false, count: count)
        for c in permutation {
            guard c >= 0, Int(c) < count, !seen[Int(c)] else { return false }
            seen[Int(c)] = true
        }
        return true
    }

    private static func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw QuantError.shapeMismatch(message()) }
    }
}
