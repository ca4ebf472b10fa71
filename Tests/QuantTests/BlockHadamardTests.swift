import CPUReference
import Quant
import Testing

/// `BlockHadamard` and the rotated blocks of `FMPQLayout.rotation`: the transform against
/// the explicit matrix in Double, the exact-arithmetic invariance W·x = (W·H / n)·(H·x), the
/// Hessian congruence GPTQ uses, which blocks rotate, and what rotation is for (a block with a
/// large value quantizes better rotated). Fresh random inputs each run; the seed is in messages.
struct BlockHadamardTests {
    /// H[i][j] = (-1)^popcount(i & j), the Sylvester matrix the butterflies compute.
    static func sylvester(_ i: Int, _ j: Int) -> Double { (i & j).nonzeroBitCount % 2 == 0 ? 1 : -1 }

    /// Within fp32 rounding of a sum of n terms: |error| <= n · 2^-24 · Σ|x| per output.
    @Test(arguments: [2, 64, 128])
    func transformIsTheSylvesterMatrix(n: Int) {
        var (random, seed) = freshGenerator()
        let x = random.gaussians(n)
        var y = x
        y.withUnsafeMutableBufferPointer { BlockHadamard.transform($0.baseAddress!, count: n) }
        let bound = Double(n) * 0x1p-24 * x.reduce(0.0) { $0 + Double(abs($1)) }
        for i in 0..<n {
            let exact = (0..<n).reduce(0.0) { $0 + Self.sylvester(i, $1) * Double(x[$1]) }
            #expect(abs(Double(y[i]) - exact) <= bound, "seed \(seed): row \(i)")
        }
        // H·H = n·I: twice is n times the input (again within rounding).
        y.withUnsafeMutableBufferPointer { BlockHadamard.transform($0.baseAddress!, count: n) }
        for i in 0..<n { #expect(abs(Double(y[i]) - Double(n) * Double(x[i])) <= 2 * Double(n) * bound, "seed \(seed): \(i)") }
    }

    @Test func onlyFullA4BlocksOfARotatingLayoutRotate() throws {
        let layout = try FMPQLayout(inputChannels: 128 * 3 + 40, blockSize: 128, int8Blocks: 1, rotation: .int4)
        #expect((0..<4).map { layout.rotates(block: $0) } == [true, true, true, false])  // block 3: A8 (and partial)
        let noInt8 = try FMPQLayout(inputChannels: 128 * 2 + 40, blockSize: 128, int8Blocks: 0, rotation: .int4)
        #expect((0..<3).map { noInt8.rotates(block: $0) } == [true, true, false])  // block 2: partial A4
        let plain = try FMPQLayout(inputChannels: 512, blockSize: 128, int8Blocks: 1)
        #expect(!(0..<4).contains { plain.rotates(block: $0) })
    }

    /// (W·H / n)·(H·x) = W·x up to fp32 rounding: rotation changes nothing before quantization.
    @Test func rotatedWeightsTimesRotatedInputsIsTheProduct() throws {
        var (random, seed) = freshGenerator()
        let (n, k, tokens) = (5, 64 * 5 + 24, 3)
        let layout = try FMPQLayout(inputChannels: k, blockSize: 64, int8Blocks: 2, rotation: .int4)
        let w = random.gaussians(n * k), x = random.gaussians(tokens * k)
        var rw = w, rx = x
        BlockHadamard.rotateColumns(&rw, rows: n, layout: layout)
        rx.withUnsafeMutableBufferPointer { rows in
            for t in 0..<tokens {
                for b in 0..<layout.blockCount where layout.rotates(block: b) { BlockHadamard.transform(rows.baseAddress! + t * k + b * 64, count: 64) }
            }
        }
        let plain = matmulTransposed(x, w, m: tokens, n: n, k: k), rotated = matmulTransposed(rx, rw, m: tokens, n: n, k: k)
        for i in plain.indices {
            // Each rotated term carries the transforms' rounding (64 · 2^-24 relative) on both sides.
            #expect(abs(plain[i] - rotated[i]) <= 1e-4 * Float(k), "seed \(seed): \(i)")
        }
    }

    /// rotateSymmetric(Σ x xᵀ) = Σ (R x)(R x)ᵀ, the Hessian of the rotated inputs.
    @Test func rotatedHessianIsTheHessianOfRotatedInputs() throws {
        var (random, seed) = freshGenerator()
        let (k, tokens, bs) = (64 * 3 + 10, 40, 64)
        let layout = try FMPQLayout(inputChannels: k, blockSize: bs, int8Blocks: 1, rotation: .int4)
        let x = random.gaussians(tokens * k)
        var rx = x
        rx.withUnsafeMutableBufferPointer { rows in
            for t in 0..<tokens {
                for b in 0..<layout.blockCount where layout.rotates(block: b) { BlockHadamard.transform(rows.baseAddress! + t * k + b * bs, count: bs) }
            }
        }
        func gram(_ m: [Float]) -> [Double] {
            var h = [Double](repeating: 0, count: k * k)
            for t in 0..<tokens { for i in 0..<k { for j in 0..<k { h[i * k + j] += Double(m[t * k + i]) * Double(m[t * k + j]) } } }
            return h
        }
        var h = gram(x)
        BlockHadamard.rotateSymmetric(&h, layout: layout)
        let expected = gram(rx)
        let scale = expected.map(abs).max()!
        for i in h.indices { #expect(abs(h[i] - expected[i]) <= 1e-5 * scale, "seed \(seed): entry \(i)") }
    }

    /// What rotation is for: A4 blocks whose scale is set by a few large values. With one value
    /// per block 20x the others, the unrotated block puts nearly everything on code 0; rotated,
    /// that value is spread over the block. The error (measured in x's own space) must be at
    /// least 3x lower; the A8 block is untouched.
    @Test func rotationLowersTheErrorOfBlocksWithLargeValues() throws {
        var (random, seed) = freshGenerator()
        let (k, tokens) = (128 * 4, 16)
        var x = random.gaussians(tokens * k)
        for t in 0..<tokens { for b in 0..<3 { x[t * k + b * 128 + Int(random.next() % 128)] *= 20 } }
        let plain = try FMPQPermutation.identity(layout: FMPQLayout(inputChannels: k, int8Blocks: 1, int4Clip: 1))
        let rotated = try FMPQPermutation.identity(layout: FMPQLayout(inputChannels: k, int8Blocks: 1, int4Clip: 1, rotation: .int4))
        let (e0, e1) = (try plain.activationError(x, tokens: tokens), try rotated.activationError(x, tokens: tokens))
        #expect(e1 * 3 < e0, "seed \(seed): rotated \(e1) against \(e0)")
    }

    /// The recipe quantizes rotated weights: the FMPQ linear with rotated A4 blocks tracks the FP
    /// product (GPTQ on the rotated Hessian), and rotation is recorded in the layout.
    @Test func recipeWithRotationTracksTheFloatProduct() throws {
        var (random, seed) = freshGenerator()
        let (n, k, tokens) = (24, 128 * 4, 64)
        let x = activationsWithOutliers(tokens: tokens, channels: k, outliers: [3, 200, 301], factor: 30, using: &random)
        let w = random.gaussians(n * k)
        var statistics = CalibrationStatistics(channels: k)
        try statistics.add(x, positions: (0..<tokens).map { Int32($0 + 1) })
        var hessian = GPTQHessian(channels: k)
        try hessian.add(x, tokens: tokens)
        let recipe = FMPQRecipe(budget: .fractionOfBlocks(0.25), rotation: .int4)
        let (weights, permutation) = try recipe.quantize(weights: w, outputs: n, statistics: statistics, hessian: hessian)
        #expect(permutation.layout.rotation == .int4 && weights.layout.rotation == .int4)
        let permutedX = try permutation.permuteColumns(x, rows: tokens)
        let q = try QuantizedActivations(quantizing: permutedX, tokens: tokens, layout: permutation.layout)
        let y = try W4AxLinear.reference(q, weights)
        let exact = matmulTransposed(x, w, m: tokens, n: n, k: k)
        let relative = (squaredDistance(y, exact) / exact.reduce(0.0) { $0 + Double($1 * $1) }).squareRoot()
        // W4 (GPTQ) and A4 on Gaussian blocks: about 0.1-0.15 relative; a wrong rotation on either
        // side would make it about 1.
        #expect(relative < 0.25, "seed \(seed): relative error \(relative)")
    }
}
