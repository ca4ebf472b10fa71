import CPUReference
import Testing

@Suite struct IntegerGemmTests {
    /// Against an independent Int64 dot product on fresh random operands.
    @Test func matchesWideDotProducts() {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let (m, n, k) = (Int.random(in: 1...20, using: &random), Int.random(in: 1...20, using: &random), 32 * Int.random(in: 1...8, using: &random))
        let a = random.int8s(m * k), b = random.int8s(n * k)
        let c = IntegerGemm.s8(a: a, b: b, m: m, n: n, k: k)
        for i in 0..<m {
            for j in 0..<n {
                let wide = (0..<k).reduce(Int64(0)) { $0 + Int64(a[i * k + $1]) * Int64(b[j * k + $1]) }
                #expect(Int64(c[i * n + j]) == wide)
            }
        }
    }

    @Test func extremesDoNotOverflow() {
        let k = 4096
        let c = IntegerGemm.s8(a: [Int8](repeating: -128, count: k), b: [Int8](repeating: -128, count: k), m: 1, n: 1, k: k)
        #expect(c == [Int32(k * 128 * 128)])
    }

    @Test func generatorIsDeterministicPerSeedAndCoversTheRange() {
        var g1 = SplitMix64(seed: 42), g2 = SplitMix64(seed: 42)
        #expect(g1.bytes(1001) == g2.bytes(1001))
        let values = Set(g1.int8s(100_000))
        #expect(values.count == 256)
    }
}

@Suite struct DecodeAttentionReferenceTests {
    /// One cached token: the output is that token's value, whatever the query.
    @Test func oneTokenReturnsItsValue() {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let d = 8
        let q = (0..<2 * d).map { _ in Float.random(in: -1...1, using: &random) }
        let v = (0..<d).map { _ in Float.random(in: -1...1, using: &random) }
        let out = DecodeAttention.reference(q: q, keys: [v.map { $0 * 3 }], values: [v], qHeads: 2, kvHeads: 1, headDim: d, scale: 0.5)
        for h in 0..<2 { for i in 0..<d { #expect(abs(out[h * d + i] - v[i]) < 1e-6) } }
    }

    /// Equal keys give equal weights: the output is the mean of the values; empty gives zeros.
    @Test func equalKeysAverageTheValuesAndEmptyGivesZeros() {
        let d = 4
        let keys = [Float](repeating: 1, count: 3 * d)
        let values: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        let out = DecodeAttention.reference(
            q: [Float](repeating: 0.3, count: 2 * d), keys: [keys, []], values: [values, []], qHeads: 1, kvHeads: 1, headDim: d, scale: 1)
        #expect(out[0..<d].map { ($0 * 1000).rounded() / 1000 } == [5, 6, 7, 8])
        #expect(out[d..<2 * d].allSatisfy { $0 == 0 })
    }
}
