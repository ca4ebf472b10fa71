#if canImport(Glibc)
import Glibc
#endif

/// Per-channel K smoothing for KV4 (DESIGN.md §2): every K channel is divided by a calibrated
/// factor and the matching Q channel multiplied by it, so q·k is unchanged while K's outlier
/// channels shrink before the per-(token, head) UINT4 quantization stretches one range over all
/// head_dim channels. The factors are folded into the q and k rows of the fused qkv weights (and
/// biases) at quantize time: the cache, the kernels and the engine never see them.
///
/// RoPE rotates channel pairs. A factor equal on both channels of a pair commutes with the
/// rotation (rope(k / s) = rope(k) / s), so factors are chosen per pair: from post-RoPE
/// statistics (what KV4 quantizes), applied before RoPE (where the weights act).
///
///     let smoothing = try KeySmoothing(keyAbsMax: stats.absMax, headDim: 64, partner: pairs, alpha: 0.5)
///     try smoothing.fold(intoQKV: &weights, inputs: 576, heads: 9)   // [q; k; v] rows
public struct KeySmoothing: Sendable, Equatable {
    /// [kvHeads * headDim]: K channel c is divided by factors[c]; channel c mod headDim of every
    /// query head that reads kv head c / headDim is multiplied by it.
    public let factors: [Float]
    public let headDim: Int

    /// s = (pair abs-max)^alpha per channel pair, scaled so that each head's factors have
    /// geometric mean 1 (q and k keep their overall magnitude; fp16 caches see no new range).
    ///
    /// alpha 0 is no smoothing; 1 flattens every pair's calibration abs-max to the same value.
    /// Q is not quantized, so SmoothQuant's balance against Q's range does not apply: alpha
    /// only trades K's outlier channels against the error their quantization adds back
    /// through the multiplied Q.
    ///
    /// - Parameters:
    ///   - keyAbsMax: [kvHeads * headDim], the largest |k| of each channel after RoPE.
    ///   - partner: [headDim], the channel RoPE pairs with each channel of a head (itself
    ///     for channels RoPE leaves alone); `partner[partner[c]] == c`.
    public init(keyAbsMax: [Float], headDim: Int, partner: [Int], alpha: Double) throws {
        try Self.checkPartner(partner, headDim: headDim, channels: keyAbsMax.count)
        guard alpha >= 0, alpha <= 1 else { throw QuantError.shapeMismatch("K smoothing alpha \(alpha) is outside 0...1") }
        guard keyAbsMax.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw QuantError.shapeMismatch("K abs-max statistics must be finite and non-negative")
        }
        var factors = [Float](repeating: 1, count: keyAbsMax.count)
        for head in 0..<keyAbsMax.count / headDim {
            let base = head * headDim
            let largest = keyAbsMax[base..<(base + headDim)].max()!
            guard largest > 0 else { continue }
            // A channel never seen active would get factor 0; 1e-4 of the head's largest keeps
            // its factor finite (its values are quantized exactly as before, near zero).
            var logs = [Double](repeating: 0, count: headDim)
            for c in 0..<headDim {
                let pairMax = max(keyAbsMax[base + c], keyAbsMax[base + partner[c]], largest * 1e-4)
                logs[c] = alpha * log(Double(pairMax))
            }
            let mean = logs.reduce(0, +) / Double(headDim)
            for c in 0..<headDim { factors[base + c] = Float(exp(logs[c] - mean)) }
        }
        try self.init(factors: factors, headDim: headDim, partner: partner)
    }

    /// Factors read back from a checkpoint; refuses any that would not leave q·k unchanged
    /// (non-positive, non-finite, or unequal across a RoPE pair).
    public init(factors: [Float], headDim: Int, partner: [Int]) throws {
        try Self.checkPartner(partner, headDim: headDim, channels: factors.count)
        guard factors.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw QuantError.shapeMismatch("K smoothing factors must be finite and positive")
        }
        for c in factors.indices where factors[c] != factors[c - c % headDim + partner[c % headDim]] {
            throw QuantError.shapeMismatch("K smoothing factor of channel \(c) differs from its RoPE partner's: it would not commute with RoPE")
        }
        self.factors = factors
        self.headDim = headDim
    }

    /// Multiplies the q rows and divides the k rows of fused qkv weights `w` ([heads * headDim +
    /// 2 * kvHeads * headDim, inputs], rows q, then k, then v); v is untouched.
    public func fold(intoQKV w: inout [Float], inputs: Int, heads: Int) throws {
        let rows = try qkvRows(count: w.count, per: inputs, heads: heads)
        w.withUnsafeMutableBufferPointer { w in
            for row in 0..<rows.q + rows.k {
                let s = row < rows.q ? factor(queryChannel: row, heads: heads) : 1 / factors[row - rows.q]
                for i in 0..<inputs { w[row * inputs + i] *= s }
            }
        }
    }

    /// The same for the fused q, k, v biases ([heads * headDim + 2 * kvHeads * headDim]).
    public func fold(intoQKVBias bias: inout [Float], heads: Int) throws {
        try fold(intoQKV: &bias, inputs: 1, heads: heads)
    }

    /// The factor that multiplies query channel `c` (of heads * headDim): its kv head's (GQA:
    /// consecutive query heads share one kv head, as the attention reads them).
    public func factor(queryChannel c: Int, heads: Int) -> Float {
        let kvHeads = factors.count / headDim
        let head = c / headDim, group = heads / kvHeads
        return factors[(head / group) * headDim + c % headDim]
    }

    private func qkvRows(count: Int, per inputs: Int, heads: Int) throws -> (q: Int, k: Int) {
        let kvHeads = factors.count / headDim
        let q = heads * headDim, k = factors.count
        guard inputs > 0, heads > 0, heads % kvHeads == 0, count == (q + 2 * k) * inputs else {
            throw QuantError.shapeMismatch("\(count) qkv values are not \(heads) query heads and \(kvHeads) kv heads of \(headDim) by \(inputs)")
        }
        return (q, k)
    }

    private static func checkPartner(_ partner: [Int], headDim: Int, channels: Int) throws {
        guard headDim > 0, channels > 0, channels % headDim == 0, partner.count == headDim,
              partner.indices.allSatisfy({ (0..<headDim).contains(partner[$0]) && partner[partner[$0]] == $0 })
        else {
            throw QuantError.shapeMismatch("K smoothing needs \(channels) channels in heads of \(headDim) and a RoPE pairing of every head channel")
        }
    }
}
