import CPUReference
import Quant
import Testing

@Suite struct CalibrationStatisticsTests {
    /// The attention sink (position 0) never reaches the statistics: its 1000x values would
    /// otherwise decide the outliers (DESIGN.md §2).
    @Test func skipsTheSinkRow() throws {
        var (random, seed) = freshGenerator()
        let k = 64
        var x = random.gaussians(3 * k)
        for c in 0..<k { x[c] = 1000 }  // row 0 is the sink
        var stats = CalibrationStatistics(channels: k)
        try stats.add(x, positions: [0, 1, 2])
        #expect(stats.rows == 2, "seed \(seed)")
        #expect(stats.absMax.allSatisfy { $0 < 1000 }, "seed \(seed)")
        var withSink = CalibrationStatistics(channels: k)
        try withSink.add(x, positions: [0, 1, 2], includeSink: true)
        #expect(withSink.rows == 3 && withSink.absMax.allSatisfy { $0 == 1000 })
    }

    /// Merging shards equals accumulating everything in one (abs-max exactly, sums to 1e-12).
    @Test func mergeEqualsOneAccumulator() throws {
        var (random, seed) = freshGenerator()
        let k = 40
        let a = random.gaussians(7 * k), b = random.gaussians(5 * k)
        var one = CalibrationStatistics(channels: k), left = one, right = one
        try one.add(a + b, tokens: 12)
        try left.add(a, tokens: 7)
        try right.add(b, tokens: 5)
        try left.merge(right)
        #expect(left.rows == one.rows && left.absMax == one.absMax, "seed \(seed)")
        for c in 0..<k { #expect(abs(left.sumOfSquares[c] - one.sumOfSquares[c]) <= 1e-12 * one.sumOfSquares[c]) }
        #expect(throws: QuantError.self) { try one.add([1, 2], tokens: 1) }
    }
}

@Suite struct FMPQPermutationTests {
    static let budgets: [INT8Budget] = [
        .fractionOfBlocks(0), .fractionOfBlocks(0.2), .fractionOfBlocks(0.5), .fractionOfBlocks(1),
        .threshold(ratio: 4, maxFraction: 0.3), .threshold(ratio: 1, maxFraction: 1),
    ]

    @Test(arguments: [64, 128])
    func isABijectionWithItsInverse(blockSize: Int) throws {
        var (random, seed) = freshGenerator()
        for budget in Self.budgets {
            for order in FMPQPermutation.INT4Order.allCases {
                let k = Int.random(in: 1...700, using: &random)
                let scores = (0..<k).map { _ in abs(random.gaussian()) * (Bool.random(using: &random) ? 1 : 30) }
                let p = try FMPQPermutation(scores: scores, budget: budget, blockSize: blockSize, int4Order: order)
                #expect(p.permutation.sorted() == (0..<Int32(k)).map { $0 }, "seed \(seed) k \(k) \(budget)")
                let inverse = p.inverse
                #expect(p.permutation.indices.allSatisfy { inverse[Int(p.permutation[$0])] == Int32($0) })
                #expect(p.layout.inputChannels == k && p.layout.blockSize == blockSize)
            }
        }
        let layout = try FMPQLayout(inputChannels: 3, int8Blocks: 0)
        #expect(throws: QuantError.self) { try FMPQPermutation(layout: layout, permutation: [0, 1, 1]) }
        #expect(throws: QuantError.self) { try FMPQPermutation(layout: layout, permutation: [0, 1, 3]) }
        #expect(throws: QuantError.self) { try FMPQPermutation(layout: layout, permutation: [0, 1]) }
    }

    /// More budget never means fewer INT8 blocks, and a fractional budget is a ceiling.
    @Test func int8ShareIsMonotoneInTheBudget() throws {
        var (random, seed) = freshGenerator()
        let k = [576, 1536, 4096].randomElement(using: &random)!
        let scores = (0..<k).map { _ in abs(random.gaussian()) * (Int.random(in: 0..<20, using: &random) == 0 ? 50 : 1) }
        var previous = -1.0
        for fraction in stride(from: 0.0, through: 1.0, by: 0.05) {
            let p = try FMPQPermutation(scores: scores, budget: .fractionOfBlocks(fraction))
            #expect(p.layout.int8Share >= previous && p.layout.int8Share <= fraction + 1e-12, "seed \(seed) k \(k) fraction \(fraction)")
            previous = p.layout.int8Share
        }
        previous = 2
        for ratio in [1.0, 1.5, 2, 3, 5, 10, 30, 100, 1000] {
            let p = try FMPQPermutation(scores: scores, budget: .threshold(ratio: ratio, maxFraction: 1))
            #expect(p.layout.int8Share <= previous, "seed \(seed) ratio \(ratio)")
            previous = p.layout.int8Share
        }
    }

    /// With every channel alike there is nothing to separate: a threshold picks no outliers,
    /// any budget leaves channels in place, and the quantization error equals the unpermuted one.
    @Test func equalStatisticsGainNothing() throws {
        var (random, seed) = freshGenerator()
        let k = 576, tokens = 16
        var stats = CalibrationStatistics(channels: k)
        try stats.add([Float](repeating: 0.5, count: 4 * k), tokens: 4)
        for criterion in OutlierCriterion.allCases {
            let threshold = try FMPQPermutation(statistics: stats, criterion: criterion, budget: .threshold(ratio: 2, maxFraction: 1))
            #expect(threshold.layout.int8Blocks == 0 && threshold.permutation == FMPQPermutation.identity(layout: threshold.layout).permutation)
            let fixed = try FMPQPermutation(statistics: stats, criterion: criterion, budget: .fractionOfBlocks(0.2))
            #expect(fixed.permutation == FMPQPermutation.identity(layout: fixed.layout).permutation)
            let x = random.gaussians(tokens * k)
            #expect(try fixed.activationError(x, tokens: tokens) == FMPQPermutation.identity(layout: fixed.layout).activationError(x, tokens: tokens), "seed \(seed)")
        }
    }

    /// Permuting the columns of both X and W leaves X·Wᵀ unchanged up to fp32 summation order:
    /// |Δ| <= 2·K·2⁻²⁴·Σ|x·w| (each order's error is at most K·2⁻²⁴·Σ|terms|).
    @Test func floatProductIsUnchangedByPermutingBoth() throws {
        var (random, seed) = freshGenerator()
        let (m, n, k) = (5, 11, 576)
        let x = activationsWithOutliers(tokens: m, channels: k, outliers: [3, 100, 400], factor: 30, using: &random)
        let w = random.gaussians(n * k)
        var stats = CalibrationStatistics(channels: k)
        try stats.add(x, tokens: m)
        let p = try FMPQPermutation(statistics: stats)
        let y = matmulTransposed(x, w, m: m, n: n, k: k)
        let yp = matmulTransposed(try p.permuteColumns(x, rows: m), try p.permuteColumns(w, rows: n), m: m, n: n, k: k)
        for i in 0..<m {
            for j in 0..<n {
                let size = (0..<k).reduce(Float(0)) { $0 + abs(x[i * k + $1] * w[j * k + $1]) }
                #expect(abs(y[i * n + j] - yp[i * n + j]) <= 2 * Float(k) * 0x1p-24 * size, "seed \(seed) y[\(i), \(j)]")
            }
        }
    }

    /// Planted outlier channels are exactly what lands in the INT8 region, by either criterion,
    /// for block sizes 64 and 128, including K with a partial last block.
    @Test(arguments: [64, 128])
    func plantedOutliersLandInTheInt8Region(blockSize: Int) throws {
        var (random, seed) = freshGenerator()
        for k in [576, 1024, 1536] {
            let blocks = (k + blockSize - 1) / blockSize
            let capacity = k - (blocks - 1) * blockSize  // real channels of one INT8 block
            let planted = Array((0..<k).shuffled(using: &random).prefix(min(capacity, 24)))
            let x = activationsWithOutliers(tokens: 64, channels: k, outliers: planted, factor: 25, using: &random)
            var stats = CalibrationStatistics(channels: k)
            try stats.add(x, tokens: 64)
            for criterion in OutlierCriterion.allCases {
                let p = try FMPQPermutation(statistics: stats, criterion: criterion, budget: .fractionOfBlocks(1 / Double(blocks)), blockSize: blockSize)
                #expect(p.layout.int8Blocks == 1)
                #expect(Set(planted.map { Int32($0) }).isSubset(of: Set(p.outlierChannels)), "seed \(seed) k \(k) \(criterion)")
                // A threshold finds them too, and asks for no more than one block.
                let t = try FMPQPermutation(statistics: stats, criterion: criterion, budget: .threshold(ratio: 8, maxFraction: 1), blockSize: blockSize)
                #expect(t.layout.int8Blocks == 1, "seed \(seed) k \(k) \(criterion)")
            }
        }
    }

    /// The point of FMPQ: on activations with planted outlier channels, the permuted layout
    /// loses far less than the same layout unpermuted (asserted: under half the error), and
    /// sorting alone (0% INT8) already helps.
    @Test func quantizationErrorDropsWithThePermutation() throws {
        var (random, seed) = freshGenerator()
        let k = 1536, tokens = 32
        let planted = Array((0..<k).shuffled(using: &random).prefix(40))
        let calibration = activationsWithOutliers(tokens: 128, channels: k, outliers: planted, factor: 20, using: &random)
        let evaluation = activationsWithOutliers(tokens: tokens, channels: k, outliers: planted, factor: 20, using: &random)
        var stats = CalibrationStatistics(channels: k)
        try stats.add(calibration, tokens: 128)
        for budget in [INT8Budget.fractionOfBlocks(0.2), .fractionOfBlocks(0)] {
            let p = try FMPQPermutation(statistics: stats, budget: budget)
            let permuted = try p.activationError(evaluation, tokens: tokens)
            let unpermuted = try FMPQPermutation.identity(layout: p.layout).activationError(evaluation, tokens: tokens)
            #expect(permuted < 0.5 * unpermuted, "seed \(seed) \(budget): \(permuted) vs \(unpermuted)")
        }
    }
}
