import CPUReference
import Foundation
@testable import Quant
import Testing

/// K smoothing folded into q/k must leave every attention logit q·k after RoPE unchanged, for
/// either RoPE pairing and for GQA; factors that would not (unequal across a pair, not
/// positive) are refused; the checkpoint keeps them and refuses a manifest that disagrees.
@Suite struct KeySmoothingTests {
    static let (heads, kvHeads, headDim, inputs, tokens) = (6, 2, 16, 24, 5)

    /// [headDim] partners: adjacent pairs (GGUF) or halves (rotate-half), rotating only `rotated` dims.
    static func partners(adjacent: Bool, rotated: Int = headDim) -> [Int] {
        (0..<headDim).map { c in
            guard c < rotated else { return c }
            return adjacent ? c ^ 1 : (c < rotated / 2 ? c + rotated / 2 : c - rotated / 2)
        }
    }

    /// RoPE on rows of `heads` heads, pairing channels as `partner` says (lower index first).
    static func rope(_ x: inout [Float], rows: Int, heads: Int, partner: [Int]) {
        for t in 0..<rows {
            for h in 0..<heads {
                for c in 0..<headDim where partner[c] > c {
                    let angle = Double(t + 3) * pow(100000, -Double(c) / Double(headDim))
                    let (a, b) = (t * heads * headDim + h * headDim + c, t * heads * headDim + h * headDim + partner[c])
                    let (x0, x1) = (x[a], x[b])
                    x[a] = x0 * Float(cos(angle)) - x1 * Float(sin(angle))
                    x[b] = x0 * Float(sin(angle)) + x1 * Float(cos(angle))
                }
            }
        }
    }

    /// Every q·k of every query head against its kv head, every token pair, after RoPE, and the
    /// v rows: [q-head, query token, key token], [tokens, kvDim].
    static func logits(weights w: [Float], x: [Float], partner: [Int]) -> (logits: [Float], v: [Float], scale: [Float]) {
        let qDim = heads * headDim, kvDim = kvHeads * headDim, rows = qDim + 2 * kvDim
        let qkv = matmulTransposed(x, w, m: tokens, n: rows, k: inputs)
        var q = (0..<tokens).flatMap { t in qkv[(t * rows)..<(t * rows + qDim)] }
        var k = (0..<tokens).flatMap { t in qkv[(t * rows + qDim)..<(t * rows + qDim + kvDim)] }
        let v = (0..<tokens).flatMap { t in qkv[(t * rows + qDim + kvDim)..<((t + 1) * rows)] }
        rope(&q, rows: tokens, heads: heads, partner: partner)
        rope(&k, rows: tokens, heads: kvHeads, partner: partner)
        var logits: [Float] = [], scale: [Float] = []
        for h in 0..<heads {
            let g = h / (heads / kvHeads)
            for i in 0..<tokens {
                for j in 0..<tokens {
                    var dot: Float = 0, magnitude: Float = 0
                    for c in 0..<headDim {
                        let term = q[i * qDim + h * headDim + c] * k[j * kvDim + g * headDim + c]
                        dot += term
                        magnitude += abs(term)
                    }
                    logits.append(dot)
                    scale.append(magnitude)
                }
            }
        }
        return (logits, v, scale)
    }

    @Test(arguments: [true, false])
    func foldingLeavesEveryAttentionLogitUnchanged(adjacent: Bool) throws {
        var (random, seed) = freshGenerator()
        let kvDim = Self.kvHeads * Self.headDim
        let rows = Self.heads * Self.headDim + 2 * kvDim
        let w = random.gaussians(rows * Self.inputs)
        let x = random.gaussians(Self.tokens * Self.inputs)
        // K abs-max with outlier channels 100x the rest, as real keys have.
        let keyAbsMax = (0..<kvDim).map { c in (c % 7 == 2 ? 100 : 1) * (1 + abs(random.gaussian())) }
        let partner = Self.partners(adjacent: adjacent, rotated: adjacent ? Self.headDim : Self.headDim - 4)
        let smoothing = try KeySmoothing(keyAbsMax: keyAbsMax, headDim: Self.headDim, partner: partner, alpha: 0.5)
        #expect(Set(smoothing.factors).count > 2, "outliers get their own factors")
        var folded = w
        try smoothing.fold(intoQKV: &folded, inputs: Self.inputs, heads: Self.heads)
        #expect(folded != w)

        let before = Self.logits(weights: w, x: x, partner: partner)
        let after = Self.logits(weights: folded, x: x, partner: partner)
        #expect(before.v == after.v, "v rows are untouched")
        var worst: Float = 0
        for i in before.logits.indices {
            worst = max(worst, abs(before.logits[i] - after.logits[i]) / max(before.scale[i], 1e-30))
        }
        #expect(worst < 1e-5, "seed \(seed): largest logit change relative to Σ|q_c k_c|: \(worst)")

        // The same factors off by a little on one channel of a pair no longer commute with RoPE.
        var broken = folded
        let row = Self.heads * Self.headDim + 2 // a k row whose partner is not scaled alike
        for i in 0..<Self.inputs { broken[row * Self.inputs + i] *= 1.5 }
        let skewed = Self.logits(weights: broken, x: x, partner: partner)
        #expect(zip(skewed.logits, before.logits).contains { abs($0 - $1) > 1e-3 * max(abs($1), 1) }, "the test can see a wrong fold")
    }

    @Test func factorsFlattenKeysAtAlphaOneAndAreOneAtAlphaZero() throws {
        var (random, seed) = freshGenerator()
        let kvDim = Self.kvHeads * Self.headDim
        var keyAbsMax = (0..<kvDim).map { _ in 0.1 + abs(random.gaussian()) * 10 }
        let partner = Self.partners(adjacent: true)
        // RoPE makes the two channels of a pair alike; the pair's max is what counts.
        for c in stride(from: 0, to: kvDim, by: 2) { keyAbsMax[c + 1] = keyAbsMax[c] * 0.9 }
        let none = try KeySmoothing(keyAbsMax: keyAbsMax, headDim: Self.headDim, partner: partner, alpha: 0)
        #expect(none.factors.allSatisfy { $0 == 1 }, "seed \(seed)")
        let full = try KeySmoothing(keyAbsMax: keyAbsMax, headDim: Self.headDim, partner: partner, alpha: 1)
        for head in 0..<Self.kvHeads {
            let flattened = (0..<Self.headDim).map { c in max(keyAbsMax[head * Self.headDim + c], keyAbsMax[head * Self.headDim + partner[c]]) / full.factors[head * Self.headDim + c] }
            #expect(flattened.max()! / flattened.min()! < 1.0001, "seed \(seed): alpha 1 gives every pair the same range")
            let logMean = (0..<Self.headDim).reduce(0.0) { $0 + log(Double(full.factors[head * Self.headDim + $1])) } / Double(Self.headDim)
            #expect(abs(logMean) < 1e-5, "factors have geometric mean 1 per head")
        }
        // A dead channel gets a finite factor.
        keyAbsMax[0] = 0
        keyAbsMax[1] = 0
        #expect(try KeySmoothing(keyAbsMax: keyAbsMax, headDim: Self.headDim, partner: partner, alpha: 1).factors.allSatisfy { $0.isFinite && $0 > 0 })
    }

    @Test func refusesFactorsThatWouldChangeTheLogits() {
        let partner = Self.partners(adjacent: true)
        var factors = [Float](repeating: 1, count: 2 * Self.headDim)
        #expect(throws: Never.self) { try KeySmoothing(factors: factors, headDim: Self.headDim, partner: partner) }
        factors[3] = 2  // its partner 2 stays 1
        #expect(throws: QuantError.self) { try KeySmoothing(factors: factors, headDim: Self.headDim, partner: partner) }
        factors[2] = 2
        factors[5] = 0
        factors[4] = 0
        #expect(throws: QuantError.self) { try KeySmoothing(factors: factors, headDim: Self.headDim, partner: partner) }
        factors[5] = .nan
        factors[4] = .nan
        #expect(throws: QuantError.self) { try KeySmoothing(factors: factors, headDim: Self.headDim, partner: partner) }
        // Not a pairing (0 -> 1 but 1 -> 2), wrong alpha, wrong shapes.
        var bad = partner
        bad[1] = 2
        #expect(throws: QuantError.self) { try KeySmoothing(factors: [Float](repeating: 1, count: Self.headDim), headDim: Self.headDim, partner: bad) }
        #expect(throws: QuantError.self) { try KeySmoothing(keyAbsMax: [Float](repeating: 1, count: Self.headDim), headDim: Self.headDim, partner: partner, alpha: 1.5) }
        #expect(throws: QuantError.self) { try KeySmoothing(keyAbsMax: [Float](repeating: 1, count: Self.headDim + 2), headDim: Self.headDim, partner: partner, alpha: 0.5) }
        var w = [Float](repeating: 1, count: 10)
        let smoothing = try! KeySmoothing(factors: [Float](repeating: 1, count: Self.headDim), headDim: Self.headDim, partner: partner)
        #expect(throws: QuantError.self) { try smoothing.fold(intoQKV: &w, inputs: 1, heads: 3) }
    }

    // MARK: In the checkpoint

    static let factorNames = ["blk.0.attn_k.smoothing", "blk.1.attn_k.smoothing"]

    /// The synthetic checkpoint with two layers' factors.
    static func smoothedCheckpoint() throws -> QuantizedCheckpoint {
        var (random, _) = freshGenerator()
        var checkpoint = try syntheticCheckpoint(using: &random)
        checkpoint.kvCache = .init(bits: 4, keySmoothing: true, keySmoothingAlpha: 0.5, keySmoothingFactors: factorNames)
        for name in factorNames {
            let keyAbsMax = (0..<Self.kvHeads * Self.headDim).map { _ in 0.1 + abs(random.gaussian()) * 10 }
            let smoothing = try KeySmoothing(keyAbsMax: keyAbsMax, headDim: Self.headDim, partner: Self.partners(adjacent: true), alpha: 0.5)
            try checkpoint.addTensor(name, Tensor(smoothing.factors, shape: [smoothing.factors.count]))
        }
        return checkpoint
    }

    static func withSmoothedCheckpoint(_ body: (String) throws -> Void) throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("ckpt").path
        try smoothedCheckpoint().write(to: path)
        try body(path)
    }

    @Test func checkpointRoundTripsTheSmoothing() throws {
        try Self.withSmoothedCheckpoint { path in
            let loaded = try QuantizedCheckpoint.load(from: path)
            #expect(loaded.kvCache == .init(bits: 4, keySmoothing: true, keySmoothingAlpha: 0.5, keySmoothingFactors: Self.factorNames))
            for name in Self.factorNames {
                let factors = try loaded.tensors[name]!.values(as: Float.self)
                #expect(try KeySmoothing(factors: factors, headDim: Self.headDim, partner: Self.partners(adjacent: true)).factors == factors)
            }
        }
        // A manifest without K smoothing (no alpha, no factor names; its keys rotated) loads.
        try withWrittenCheckpoint { path in
            let loaded = try QuantizedCheckpoint.load(from: path)
            #expect(loaded.kvCache == .init(bits: 4, keySmoothing: false, keyRotation: true))
        }
    }

    @Test func disagreeingSmoothingIsRefused() throws {
        func editKV(_ path: String, _ edit: (inout [String: Any]) -> Void) throws {
            try editManifest(path) { manifest in
                var kv = manifest["kvCache"] as! [String: Any]
                edit(&kv)
                manifest["kvCache"] = kv
            }
        }
        func isBadManifest(_ error: CheckpointError, saying text: String) -> Bool {
            if case .badManifest = error { return "\(error)".contains(text) }
            return false
        }
        // The flag without its alpha, without its factors; factors without the flag.
        try Self.withSmoothedCheckpoint { path in
            try editKV(path) { $0["keySmoothingAlpha"] = nil }
            expectLoadError(path) { isBadManifest($0, saying: "keySmoothingAlpha") }
        }
        try Self.withSmoothedCheckpoint { path in
            try editKV(path) { $0["keySmoothingFactors"] = nil }
            expectLoadError(path) { isBadManifest($0, saying: "keySmoothingFactors") }
        }
        try Self.withSmoothedCheckpoint { path in
            try editKV(path) { $0["keySmoothing"] = false }
            expectLoadError(path) { isBadManifest($0, saying: "keySmoothing is false") }
        }
        // The manifest names a tensor the file does not have.
        try Self.withSmoothedCheckpoint { path in
            try editKV(path) { $0["keySmoothingFactors"] = Self.factorNames + ["blk.2.attn_k.smoothing"] }
            expectLoadError(path) { $0.isShapeMismatch(tensor: "blk.2.attn_k.smoothing") && "\($0)".contains("missing") }
        }
        // A factor tensor of the wrong dtype (checksums consistent: written that way).
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var checkpoint = try Self.smoothedCheckpoint()
        checkpoint.kvCache.keySmoothingFactors = Self.factorNames + ["codes.i8"]
        try checkpoint.write(to: folder.path + "/dtype")
        expectLoadError(folder.path + "/dtype") { $0.isShapeMismatch(tensor: "codes.i8") && "\($0)".contains("F32") }
        // One of another length than the others.
        checkpoint.kvCache.keySmoothingFactors = Self.factorNames + ["output_norm.weight"]
        try checkpoint.write(to: folder.path + "/length")
        expectLoadError(folder.path + "/length") { $0.isShapeMismatch(tensor: "output_norm.weight") && "\($0)".contains("[576]") }
        // Non-positive factors.
        checkpoint = try Self.smoothedCheckpoint()
        try checkpoint.addTensor("zeros", Tensor([Float](repeating: 0, count: Self.kvHeads * Self.headDim), shape: [Self.kvHeads * Self.headDim]))
        checkpoint.kvCache.keySmoothingFactors = Self.factorNames + ["zeros"]
        try checkpoint.write(to: folder.path + "/zeros")
        expectLoadError(folder.path + "/zeros") { $0.isShapeMismatch(tensor: "zeros") && "\($0)".contains("positive") }
    }
}

@Suite struct OutlierChannelBudgetTests {
    /// Atom's budget: a fixed 128 outlier channels, i.e. the blocks they fill, whatever the width.
    @Test func fixedChannelsFillWholeBlocks() throws {
        let scores = [Float](repeating: 1, count: 1536)
        #expect(INT8Budget.outlierChannels(128).int8Blocks(channels: 576, blockSize: 128, scores: Array(scores.prefix(576))) == 1)
        #expect(INT8Budget.outlierChannels(128).int8Blocks(channels: 1536, blockSize: 128, scores: scores) == 1)
        #expect(INT8Budget.outlierChannels(128).int8Blocks(channels: 1536, blockSize: 64, scores: scores) == 2)
        #expect(INT8Budget.outlierChannels(129).int8Blocks(channels: 1536, blockSize: 128, scores: scores) == 2)
        #expect(INT8Budget.outlierChannels(0).int8Blocks(channels: 576, blockSize: 128, scores: Array(scores.prefix(576))) == 0)
        #expect(INT8Budget.outlierChannels(4096).int8Blocks(channels: 576, blockSize: 128, scores: Array(scores.prefix(576))) == 5)
        let json = try JSONEncoder().encode(INT8Budget.outlierChannels(128))
        #expect(String(decoding: json, as: UTF8.self) == #"{"outlierChannels":128}"#)
        #expect(try JSONDecoder().decode(INT8Budget.self, from: json) == .outlierChannels(128))
    }
}
