import Glibc

/// A small, fast, seedable generator (SplitMix64). Checks draw fresh inputs from a random
/// seed each run and print it, so any failure can be replayed with the same seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// `count` uniformly random bytes, eight per draw.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            var i = 0
            while i + 8 <= count {
                raw.storeBytes(of: next(), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            if i < count {
                var last = next()
                while i < count { raw[i] = UInt8(truncatingIfNeeded: last); last >>= 8; i += 1 }
            }
        }
        return out
    }

    /// `count` uniformly random int8 values over the full range -128...127.
    public mutating func int8s(_ count: Int) -> [Int8] {
        bytes(count).map { Int8(bitPattern: $0) }
    }

    /// A standard normal sample (Box–Muller).
    public mutating func gaussian() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne...1, using: &self)
        let u2 = Double.random(in: 0..<1, using: &self)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    public mutating func gaussians(_ count: Int) -> [Float] { (0..<count).map { _ in gaussian() } }
}
