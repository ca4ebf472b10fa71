/// The Walsh-Hadamard rotation of FMPQ's blocks (`FMPQLayout.rotation`).
///
/// A4 blocks hold the channels that are not outliers, but a few of them still set each
/// (token, block) scale and leave most values on a handful of the 15 codes. H (the n x n
/// Sylvester Hadamard matrix, entries +-1, H·H = n·I) spreads every value over the whole block,
/// so each block's values come out nearly Gaussian and share one scale far better (QuaRot and
/// SpinQuant rotate whole layers for the same reason; FMPQ rotates within a block, so the A8
/// outlier blocks, the per-block integer GEMM and its kernels are unchanged). The product is
/// unchanged in exact arithmetic: W·x = (W·H / n)·(H·x); the weights take W·H / n once at
/// quantize time, the activations H·x at run time, before their scale is taken.
///
/// Unnormalized (+-1 entries) so that the transform is only fp32 additions and subtractions, in
/// the fixed butterfly order below, which the GPU quantize kernel repeats exactly (bit-exact
/// against this reference); 1 / n, a power of two, is exact in the weights.
public enum BlockHadamard {
    /// x <- H·x for `count` values (a power of two), in place: log2(count) butterfly stages of
    /// stride 1, 2, 4, ..., each (a, b) -> (a + b, a - b).
    @inlinable
    public static func transform<Value: FloatingPoint>(_ x: UnsafeMutablePointer<Value>, count: Int) {
        precondition(count > 0 && count & (count - 1) == 0, "the Hadamard size must be a power of two")
        var h = 1
        while h < count {
            var i = 0
            while i < count {
                for j in i..<(i + h) {
                    let a = x[j], b = x[j + h]
                    x[j] = a + b
                    x[j + h] = a - b
                }
                i += 2 * h
            }
            h *= 2
        }
    }

    /// The weights' side for every rotated block of `layout`: W[:, block] <- W[:, block]·H / n
    /// (H is symmetric, so each row's block is transformed). `w` is [rows, inputChannels].
    public static func rotateColumns(_ w: inout [Float], rows: Int, layout: FMPQLayout) {
        let k = layout.inputChannels, bs = layout.blockSize, inverse = 1 / Float(bs)
        w.withUnsafeMutableBufferPointer { m in
            for r in 0..<rows {
                for b in 0..<layout.blockCount where layout.rotates(block: b) {
                    let block = m.baseAddress! + r * k + b * bs
                    transform(block, count: bs)
                    for i in 0..<bs { block[i] *= inverse }
                }
            }
        }
    }

    /// The Hessian of the rotated activations: X' = R·X for R block-diagonal (H on rotated
    /// blocks, I elsewhere), so H' = R·H·R (R symmetric). `h` is [K, K], K = inputChannels:
    /// each row's rotated blocks transformed (H·R), transposed (R·H, both symmetric), and again.
    public static func rotateSymmetric(_ h: inout [Double], layout: FMPQLayout) {
        let k = layout.inputChannels, bs = layout.blockSize
        let rotated = (0..<layout.blockCount).filter { layout.rotates(block: $0) }
        guard !rotated.isEmpty else { return }
        h.withUnsafeMutableBufferPointer { m in
            let base = m.baseAddress!
            for pass in 0..<2 {
                for row in 0..<k { for b in rotated { transform(base + row * k + b * bs, count: bs) } }
                if pass == 0 {
                    for i in 0..<k { for j in (i + 1)..<k { (base[i * k + j], base[j * k + i]) = (base[j * k + i], base[i * k + j]) } }
                }
            }
        }
    }
}
