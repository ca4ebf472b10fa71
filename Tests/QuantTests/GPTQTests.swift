import CPUReference
@testable import Quant
import Testing

/// A synthetic layer whose inputs are strongly correlated across channels (a low-rank signal
/// plus a little noise, with a few loud channels), as the inputs of LLM layers are: the case
/// where GPTQ's error compensation pays.
struct CorrelatedLayer {
    let k: Int, n: Int
    let weights: [Float]  // [n, k]
    let mixing: [Float]  // [rank, k]
    let loud: [Int]
    let rank = 16

    init(k: Int, n: Int, using random: inout SplitMix64) {
        self.k = k
        self.n = n
        weights = random.gaussians(n * k)
        mixing = random.gaussians(rank * k)
        loud = Array((0..<k).shuffled(using: &random).prefix(8))
    }

    /// [tokens, k] inputs drawn from the layer's distribution.
    func inputs(_ tokens: Int, using random: inout SplitMix64) -> [Float] {
        var x = [Float](repeating: 0, count: tokens * k)
        for t in 0..<tokens {
            let z = random.gaussians(rank)
            for c in 0..<k {
                var v: Float = 0.1 * random.gaussian()
                for r in 0..<rank { v += z[r] * mixing[r * k + c] }
                x[t * k + c] = v
            }
            for c in loud { x[t * k + c] *= 10 }
        }
        return x
    }
}

@Suite struct GPTQTests {
    /// The output error ‖X·Wᵀ − X·Ŵᵀ‖² on held-out inputs: GPTQ must be clearly below RTN on
    /// the same layout. Asserted: under half of RTN's when the loud (outlier) columns go first
    /// (seen: 0.4-3% of RTN, these inputs being nearly low-rank); merely below RTN when they
    /// go last (`natural`, seen 55-80%), the ordering DESIGN.md §2 found worse.
    @Test(arguments: [64, 128])
    func beatsRoundToNearestOnCorrelatedInputs(blockSize: Int) throws {
        var (random, seed) = freshGenerator()
        let layer = CorrelatedLayer(k: 320, n: 48, using: &random)
        let (k, n) = (layer.k, layer.n)
        let calibration = layer.inputs(1024, using: &random)
        let heldOut = layer.inputs(256, using: &random)
        var stats = CalibrationStatistics(channels: k)
        try stats.add(calibration, tokens: 1024)
        var hessian = GPTQHessian(channels: k)
        try hessian.add(calibration, tokens: 1024)
        let p = try FMPQPermutation(statistics: stats, budget: .fractionOfBlocks(0.34), blockSize: blockSize)  // one INT8 block

        let w = try p.permuteColumns(layer.weights, rows: n)
        let h = try p.permuteSymmetric(hessian.matrix)
        let x = try p.permuteColumns(heldOut, rows: 256)
        let exact = matmulTransposed(x, w, m: 256, n: n, k: k)
        func outputError(_ q: Int4Weights) -> Double {
            let kp = p.layout.paddedChannels
            let dq = q.dequantized()
            let trimmed = (0..<n).flatMap { dq[$0 * kp..<$0 * kp + k] }
            return squaredDistance(exact, matmulTransposed(x, trimmed, m: 256, n: n, k: k))
        }
        let rtn = outputError(try Int4Weights(roundingToNearest: w, outputs: n, layout: p.layout))
        for order in GPTQ.ColumnOrder.allCases {
            let gptq = outputError(try GPTQ(columnOrder: order).quantize(w, outputs: n, hessian: h, layout: p.layout))
            let margin = order == .natural ? 1.0 : 0.5
            #expect(gptq < margin * rtn, "seed \(seed) \(order): GPTQ \(gptq) vs RTN \(rtn)")
        }
    }

    /// Codes stay in [-7, 7], scales are positive fp16, padding codes are 0, and two runs
    /// give identical bits (the row tiles run on any threads).
    @Test func codesAreInRangeAndDeterministic() throws {
        var (random, seed) = freshGenerator()
        let layer = CorrelatedLayer(k: 200, n: 101, using: &random)  // partial last block, a partial row tile
        let x = layer.inputs(300, using: &random)
        var hessian = GPTQHessian(channels: 200)
        try hessian.add(x, tokens: 300)
        let layout = try FMPQLayout(inputChannels: 200, int8Blocks: 1)
        let a = try GPTQ().quantize(layer.weights, outputs: 101, hessian: hessian.matrix, layout: layout)
        let b = try GPTQ().quantize(layer.weights, outputs: 101, hessian: hessian.matrix, layout: layout)
        #expect(a == b, "seed \(seed)")
        for row in 0..<101 {
            for c in 0..<layout.paddedChannels {
                let code = a.code(output: row, channel: c)
                #expect((-7...7).contains(code) && (c < 200 || code == 0), "seed \(seed)")
            }
            for block in 0..<layout.blockCount { #expect(a.scale(output: row, block: block) > 0) }
        }
    }

    /// With a diagonal Hessian (uncorrelated inputs) there is nothing to compensate: the inverse
    /// factor is diagonal, no error moves to another column, and GPTQ is RTN bit for bit.
    @Test func diagonalHessianGivesExactlyRoundToNearest() throws {
        var (random, seed) = freshGenerator()
        let (n, k) = (9, 300)
        let w = random.gaussians(n * k)
        var h = [Double](repeating: 0, count: k * k)
        for i in 0..<k { h[i * k + i] = Double.random(in: 0.1...10, using: &random) }
        let layout = try FMPQLayout(inputChannels: k, blockSize: 64, int8Blocks: 2)
        for order in GPTQ.ColumnOrder.allCases {
            let gptq = try GPTQ(columnOrder: order).quantize(w, outputs: n, hessian: h, layout: layout)
            #expect(gptq == (try Int4Weights(roundingToNearest: w, outputs: n, layout: layout)), "seed \(seed) \(order)")
        }
    }

    /// A channel that calibration never excited (H[i, i] = 0) gets a zero weight, as in GPTQ,
    /// and does not break the factorization.
    @Test func deadChannelsAreZeroed() throws {
        var (random, seed) = freshGenerator()
        let layer = CorrelatedLayer(k: 128, n: 8, using: &random)
        var x = layer.inputs(200, using: &random)
        for t in 0..<200 { x[t * 128 + 5] = 0 }
        var hessian = GPTQHessian(channels: 128)
        try hessian.add(x, tokens: 200)
        let q = try GPTQ().quantize(layer.weights, outputs: 8, hessian: hessian.matrix, layout: FMPQLayout(inputChannels: 128, int8Blocks: 0))
        #expect((0..<8).allSatisfy { q.code(output: $0, channel: 5) == 0 }, "seed \(seed)")
    }

    @Test func refusesMismatchedShapes() throws {
        let layout = try FMPQLayout(inputChannels: 64, blockSize: 64, int8Blocks: 0)
        #expect(throws: QuantError.self) { try GPTQ().quantize([Float](repeating: 1, count: 64), outputs: 1, hessian: [1], layout: layout) }
        #expect(throws: QuantError.self) { try GPTQ().quantize([1], outputs: 1, hessian: [Double](repeating: 0, count: 64 * 64), layout: layout) }
    }
}

@Suite struct CholeskyInverseTests {
    /// UᵀU·H = I to 1e-9 for random SPD matrices (condition numbers ~10-100, Double), U is upper
    /// triangular, and a singular matrix is refused.
    @Test func upperFactorInvertsH() throws {
        var (random, seed) = freshGenerator()
        for k in [1, 5, 64, 150] {
            let x = random.gaussians(3 * k * k)
            var h = [Double](repeating: 0, count: k * k)
            for i in 0..<k {
                for j in 0..<k { h[i * k + j] = (0..<3 * k).reduce(0.0) { $0 + Double(x[$1 * k + i]) * Double(x[$1 * k + j]) } }
            }
            let u = try CholeskyInverse.upperFactorOfInverse(h, k: k)
            for i in 0..<k {
                for j in 0..<i { #expect(u[i * k + j] == 0) }
                for j in 0..<k {
                    var s = 0.0
                    for p in 0..<k {
                        var hinv = 0.0
                        for q in 0...min(i, p) { hinv += u[q * k + i] * u[q * k + p] }
                        s += hinv * h[p * k + j]
                    }
                    #expect(abs(s - (i == j ? 1 : 0)) <= 1e-9, "seed \(seed) k \(k) [\(i), \(j)]")
                }
            }
        }
        #expect(throws: CholeskyInverse.Failure.self) { try CholeskyInverse.upperFactorOfInverse([1, 1, 1, 1], k: 2) }
    }
}

@Suite struct GPTQHessianTests {
    /// The accumulated matrix is 2·XᵀX / rows of all batches together, symmetric (1e-6 relative:
    /// fp32 dot products of at most 100 terms).
    @Test func equalsTwiceXTransposeXOverRows() throws {
        var (random, seed) = freshGenerator()
        let k = 37
        let a = random.gaussians(60 * k), b = random.gaussians(40 * k)
        var hessian = GPTQHessian(channels: k)
        try hessian.add(a, tokens: 60)
        try hessian.add(b, positions: (0..<40).map { Int32($0) }, includeSink: false)  // drops row 0 of b
        let x = a + b[k...]
        let h = hessian.matrix
        #expect(hessian.rows == 99)
        for i in 0..<k {
            for j in 0..<k {
                var s = 0.0
                for t in 0..<99 { s += Double(x[t * k + i]) * Double(x[t * k + j]) }
                s *= 2 / 99.0
                #expect(abs(h[i * k + j] - s) <= 1e-5 * (abs(s) + 1), "seed \(seed) H[\(i), \(j)]")
                #expect(h[i * k + j] == h[j * k + i])
            }
        }
    }
}
