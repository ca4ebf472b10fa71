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
