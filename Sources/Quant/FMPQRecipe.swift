/// Every choice FMPQ makes for one linear layer, as one value: the outlier criterion, the INT8
/// budget, the block size, the INT4-region order and the weight method. `quantize` builds one
/// from its options and applies it to every layer; the checkpoint records it; the accuracy
/// table varies one field at a time.
public struct FMPQRecipe: Sendable, Equatable, Codable {
    /// How weights are rounded to INT4.
    public enum WeightMethod: String, Sendable, Equatable, Codable, CaseIterable {
        /// GPTQ error compensation (`GPTQ`), the default (DESIGN.md §2).
        case gptq
        /// Round to nearest (`Int4Weights(roundingToNearest:)`), the baseline.
        case rtn
    }

    public var criterion: OutlierCriterion
    public var budget: INT8Budget
    /// 128 as the paper; 64 measured much better on SmolLM2 (FMPQ 20%: 38.7 against 44.5, DESIGN.md §2).
    public var blockSize: Int
    public var int4Order: FMPQPermutation.INT4Order
    public var weightMethod: WeightMethod
    /// Used when `weightMethod` is `.gptq`.
    public var gptq: GPTQ
    /// `FMPQLayout.int4Clip` of every layer. 0.8 by the accuracy table (SmolLM2 W4AxKV4: 40.15
    /// against 42.67 unclipped; 0.9 41.32, 0.7 43.90).
    public var int4Clip: Float
    public static let defaultInt4Clip: Float = 0.8

    public init(
        criterion: OutlierCriterion = .absMax, budget: INT8Budget = .default, blockSize: Int = 128,
        int4Order: FMPQPermutation.INT4Order = .sortedByScore, weightMethod: WeightMethod = .gptq, gptq: GPTQ = GPTQ(),
        int4Clip: Float = FMPQRecipe.defaultInt4Clip
    ) {
        self.criterion = criterion
        self.budget = budget
        self.blockSize = blockSize
        self.int4Order = int4Order
        self.weightMethod = weightMethod
        self.gptq = gptq
        self.int4Clip = int4Clip
    }

    /// The same permutation with this recipe's A4 clip in its layout.
    func clipped(_ permutation: FMPQPermutation) throws -> FMPQPermutation {
        try FMPQPermutation(layout: permutation.layout.clippingInt4(int4Clip), permutation: permutation.permutation)
    }

    /// Quantizes one linear layer: chooses its permutation from `statistics`, permutes the
    /// weight's input columns (and the Hessian), and rounds the weights by `weightMethod`.
    /// `weights` is [outputs, K] in the original channel order; `hessian` is needed for GPTQ.
    /// `shards` > 1 permutes a row-parallel linear for that tensor parallelism (`FMPQSharding.swift`).
    public func quantize(
        weights: [Float], outputs: Int, statistics: CalibrationStatistics, hessian: GPTQHessian? = nil, shards: Int = 1
    ) throws -> (weights: Int4Weights, permutation: FMPQPermutation) {
        let permutation = try clipped(FMPQPermutation(
            scores: criterion.scores(statistics), budget: budget, blockSize: blockSize, int4Order: int4Order, shards: shards
        ))
        let permuted = try permutation.permuteColumns(weights, rows: outputs)
        switch weightMethod {
        case .rtn:
            return (try Int4Weights(roundingToNearest: permuted, outputs: outputs, layout: permutation.layout), permutation)
        case .gptq:
            guard let hessian, hessian.channels == statistics.channels else {
                throw QuantError.shapeMismatch("GPTQ needs the layer's Hessian over its \(statistics.channels) input channels")
            }
            let h = try permutation.permuteSymmetric(hessian.matrix)
            return (try gptq.quantize(permuted, outputs: outputs, hessian: h, layout: permutation.layout), permutation)
        }
    }
}
