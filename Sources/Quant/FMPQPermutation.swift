/// The FMPQ channel permutation of one linear layer and the layout it produces: outlier
/// channels packed into the fewest blocks, those blocks last in K and in INT8 (DESIGN.md §2).
///
/// Position p of the permuted K takes original channel `permutation[p]`. Positions from
/// `layout.inputChannels` to `layout.paddedChannels` are the format's zero padding (the end of
/// the last block; see `FMPQLayout`), so with a partial last block the INT8 region holds fewer
/// than `int8Channels` real channels. Activations are permuted at run time (the fused
/// norm/quantize kernels gather through `permutation`; `ActivationQuantization` is their
/// reference); weight input columns are permuted offline with `permuteColumns`, and then X·Wᵀ
/// is unchanged.
public struct FMPQPermutation: Sendable, Equatable, Codable {
    /// The layout after permuting: `layout.int8Blocks` blocks at the end of K are INT8.
    public let layout: FMPQLayout
    /// [layout.inputChannels]: the original channel at each permuted position.
    public let permutation: [Int32]

    /// How the channels that stay INT4 are ordered.
    public enum INT4Order: String, Sendable, Equatable, Codable, CaseIterable {
        /// Every channel in ascending score, so channels of like magnitude share a block and
        /// fewer blocks are stretched by a large neighbour. Default: in the numpy study sorting
        /// alone (0% INT8) took W4A4 perplexity from 203.6 to 116.3 (DESIGN.md §2).
        case sortedByScore
        /// Non-outlier channels keep their original order; only the outliers move (the paper's
        /// description read literally). Kept for the comparison table.
        case original
    }

    /// A given permutation; throws unless it is a bijection of 0..<layout.inputChannels.
    public init(layout: FMPQLayout, permutation: [Int32]) throws {
        guard permutation.count == layout.inputChannels else {
            throw QuantError.shapeMismatch("permutation of \(permutation.count) channels for a layer of \(layout.inputChannels)")
        }
        var seen = [Bool](repeating: false, count: permutation.count)
        for c in permutation {
            guard (0..<Int32(permutation.count)).contains(c), !seen[Int(c)] else {
                throw QuantError.invalidLayout("permutation is not a bijection (channel \(c) out of range or repeated)")
            }
            seen[Int(c)] = true
        }
        self.layout = layout
        self.permutation = permutation
    }

    /// No permutation: the layout's INT8 blocks take whatever channels are last (the
    /// "without permutation" baseline).
    public static func identity(layout: FMPQLayout) -> FMPQPermutation {
        try! FMPQPermutation(layout: layout, permutation: (0..<Int32(layout.inputChannels)).map { $0 })
    }

    /// Chooses the outlier channels from calibration statistics and builds the permutation.
    public init(
        statistics: CalibrationStatistics, criterion: OutlierCriterion = .absMax, budget: INT8Budget = .default,
        blockSize: Int = 128, int4Order: INT4Order = .sortedByScore
    ) throws {
        try self.init(scores: criterion.scores(statistics), budget: budget, blockSize: blockSize, int4Order: int4Order)
    }

    /// Builds the permutation from one score per channel (higher = more of an outlier). Ties
    /// keep the original channel order, so the result is deterministic and all-equal scores
    /// give the identity.
    public init(scores: [Float], budget: INT8Budget = .default, blockSize: Int = 128, int4Order: INT4Order = .sortedByScore) throws {
        let k = scores.count
        guard k > 0 else { throw QuantError.invalidLayout("no channels to permute") }
        guard scores.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw QuantError.invalidLayout("channel scores must be finite and non-negative")
        }
        let int8Blocks = budget.int8Blocks(channels: k, blockSize: blockSize, scores: scores)
        let layout = try FMPQLayout(inputChannels: k, blockSize: blockSize, int8Blocks: int8Blocks)
        // Ascending score, ties by channel: the highest scores end up last, in the INT8 region.
        let ascending = (0..<k).sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 < $1 }
        let int8Real = max(0, k - layout.int4Channels)  // real channels of the INT8 region
        let order: [Int]
        switch int4Order {
        case .sortedByScore:
            order = ascending
        case .original:
            let outliers = Array(ascending.suffix(int8Real))
            let isOutlier = Set(outliers)
            order = (0..<k).filter { !isOutlier.contains($0) } + outliers
        }
        try self.init(layout: layout, permutation: order.map { Int32($0) })
    }

    /// The original channels placed in the INT8 region, in permuted order.
    public var outlierChannels: [Int32] {
        Array(permutation.suffix(max(0, layout.inputChannels - layout.int4Channels)))
    }

    /// [layout.inputChannels]: the permuted position of each original channel.
    public var inverse: [Int32] {
        var inverse = [Int32](repeating: 0, count: permutation.count)
        for (p, c) in permutation.enumerated() { inverse[Int(c)] = Int32(p) }
        return inverse
    }

    /// Permutes the columns of a row-major [rows, inputChannels] matrix: activations
    /// ([tokens, K]) and weights ([outputs, K]) alike; out[r, p] = m[r, permutation[p]].
    public func permuteColumns(_ m: [Float], rows: Int) throws -> [Float] {
        let k = layout.inputChannels
        guard rows >= 0, m.count == rows * k else {
            throw QuantError.shapeMismatch("\(m.count) values for \(rows) rows of \(k) channels")
        }
        var out = [Float](repeating: 0, count: m.count)
        for r in 0..<rows {
            for p in 0..<k { out[r * k + p] = m[r * k + Int(permutation[p])] }
        }
        return out
    }

    /// Permutes rows and columns of a symmetric [K, K] matrix (a GPTQ Hessian) to the permuted
    /// channel order: out[p, q] = h[permutation[p], permutation[q]].
    public func permuteSymmetric(_ h: [Double]) throws -> [Double] {
        let k = layout.inputChannels
        guard h.count == k * k else { throw QuantError.shapeMismatch("\(h.count) values for a \(k) x \(k) matrix") }
        var out = [Double](repeating: 0, count: h.count)
        for p in 0..<k {
            let row = Int(permutation[p]) * k
            for q in 0..<k { out[p * k + q] = h[row + Int(permutation[q])] }
        }
        return out
    }

    /// The relative squared error ‖Q(x) − x‖² / ‖x‖² of quantizing activations `x` ([tokens, K],
    /// original channel order) in this layout with per-(token, block) scales: the cheap
    /// per-layer proxy for comparing criteria and budgets before a perplexity run. Rotated
    /// blocks are compared as H·x and weighted 1 / n (H·H = n·I): the error in x's own space.
    public func activationError(_ x: [Float], tokens: Int) throws -> Double {
        var permuted = try permuteColumns(x, rows: tokens)
        let back = try QuantizedActivations(quantizing: permuted, tokens: tokens, layout: layout).dequantized()
        let k = layout.inputChannels, kp = layout.paddedChannels, bs = layout.blockSize
        permuted.withUnsafeMutableBufferPointer { rows in
            for t in 0..<tokens {
                for b in 0..<layout.blockCount where layout.rotates(block: b) {
                    BlockHadamard.transform(rows.baseAddress! + t * k + b * bs, count: bs)
                }
            }
        }
        var error = 0.0, energy = 0.0
        for t in 0..<tokens {
            for p in 0..<k {
                let weight = layout.rotates(block: p / bs) ? 1 / Double(bs) : 1
                let v = Double(permuted[t * k + p])
                let d = Double(back[t * kp + p]) - v
                error += weight * d * d
                energy += weight * v * v
            }
        }
        return energy > 0 ? error / energy : 0
    }
}
