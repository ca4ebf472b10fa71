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
    /// `FMPQLayout.int4Clip` of every layer. 0.9 with rotated A4 blocks by the accuracy table
    /// (SmolLM2 W4AxKV4, rotated: 0.8 35.81, 0.9 34.84, 0.95 35.74, 1 37.37); unrotated, 0.8 was
    /// best (40.15 against 42.67 unclipped).
    public var int4Clip: Float
    public static let defaultInt4Clip: Float = 0.9
    /// `FMPQLayout.rotation` of every layer (Walsh-Hadamard rotation of blocks).
    public var rotation: BlockRotation
    /// The A4 blocks: SmolLM2 W4AxKV4 34.84 against 40.15 unrotated (each at its best clip;
    /// bench/results/accuracy-smollm2.md).
    public static let defaultRotation = BlockRotation.int4

    public init(
        criterion: OutlierCriterion = .absMax, budget: INT8Budget = .default, blockSize: Int = 128,
        int4Order: FMPQPermutation.INT4Order = .sortedByScore, weightMethod: WeightMethod = .gptq, gptq: GPTQ = GPTQ(),
        int4Clip: Float = FMPQRecipe.defaultInt4Clip, rotation: BlockRotation = FMPQRecipe.defaultRotation
    ) {
        self.rotation = rotation
        self.criterion = criterion
        self.budget = budget
        self.blockSize = blockSize
        self.int4Order = int4Order
        self.weightMethod = weightMethod
        self.gptq = gptq
        self.int4Clip = int4Clip
    }

    /// Decodes a manifest's recipe; `rotation` is absent before checkpoint version 3 (none).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        criterion = try c.decode(OutlierCriterion.self, forKey: .criterion)
        budget = try c.decode(INT8Budget.self, forKey: .budget)
        blockSize = try c.decode(Int.self, forKey: .blockSize)
        int4Order = try c.decode(FMPQPermutation.INT4Order.self, forKey: .int4Order)
        weightMethod = try c.decode(WeightMethod.self, forKey: .weightMethod)
        gptq = try c.decode(GPTQ.self, forKey: .gptq)
        int4Clip = try c.decode(Float.self, forKey: .int4Clip)
        rotation = try c.decodeIfPresent(BlockRotation.self, forKey: .rotation) ?? .none
    }

    /// The same permutation with this recipe's A4 clip and rotation in its layout.
    func treatingInt4(_ permutation: FMPQPermutation) throws -> FMPQPermutation {
        try FMPQPermutation(layout: int4Treatment(permutation.layout), permutation: permutation.permutation)
    }

    /// `layout` with this recipe's A4 clip and rotation.
    public func int4Treatment(_ layout: FMPQLayout) throws -> FMPQLayout {
        try layout.with(int4Clip: int4Clip, rotation: rotation)
    }

    /// Quantizes one linear layer: chooses its permutation from `statistics`, then
    /// `quantize(weights:outputs:permutation:hessian:)`. `weights` is [outputs, K] in the
    /// original channel order; `hessian` is needed for GPTQ. `shards` > 1 permutes a row-parallel
    /// linear for that tensor parallelism (`FMPQSharding.swift`).
    public func quantize(
        weights: [Float], outputs: Int, statistics: CalibrationStatistics, hessian: GPTQHessian? = nil, shards: Int = 1
    ) throws -> (weights: Int4Weights, permutation: FMPQPermutation) {
        let permutation = try treatingInt4(FMPQPermutation(
            scores: criterion.scores(statistics), budget: budget, blockSize: blockSize, int4Order: int4Order, shards: shards
        ))
        return (try quantize(weights: weights, outputs: outputs, permutation: permutation, hessian: hessian), permutation)
    }

    /// Rounds one linear layer's weights to INT4 by `weightMethod` in `permutation`'s layout:
    /// input columns (and the Hessian) permuted, rotated blocks rotated (`BlockHadamard`).
    public func quantize(weights: [Float], outputs: Int, permutation: FMPQPermutation, hessian: GPTQHessian?) throws -> Int4Weights {
        var permuted = try permutation.permuteColumns(weights, rows: outputs)
        BlockHadamard.rotateColumns(&permuted, rows: outputs, layout: permutation.layout)
        switch weightMethod {
        case .rtn:
            return try Int4Weights(roundingToNearest: permuted, outputs: outputs, layout: permutation.layout)
        case .gptq:
            guard let hessian, hessian.channels == permutation.layout.inputChannels else {
                throw QuantError.shapeMismatch("GPTQ needs the layer's Hessian over its \(permutation.layout.inputChannels) input channels")
            }
            var h = try permutation.permuteSymmetric(hessian.matrix)
            BlockHadamard.rotateSymmetric(&h, layout: permutation.layout)
            return try gptq.quantize(permuted, outputs: outputs, hessian: h, layout: permutation.layout)
        }
    }
}
