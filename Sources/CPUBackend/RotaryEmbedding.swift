import Glibc
import Model

/// Rotary position embedding (RoPE) as the model file wants it: which channels pair up
/// (`RoPEConvention`), the base, and the frequency scaling (`RoPEScaling`).
///
/// Channel pair i (i < rotatedDims / 2) of every head at position p is rotated by the angle
/// p * frequency[i], with frequency[i] = base^(-2i / rotatedDims), divided by the scaling.
/// Channels at or beyond `rotatedDims` pass through unchanged.
public struct RotaryEmbedding: Sendable {
    public let convention: RoPEConvention
    public let headDim: Int
    /// Channels of each head that are rotated (even, at most headDim).
    public let rotatedDims: Int
    /// Radians per position of each channel pair, scaling applied: [rotatedDims / 2].
    public let frequencies: [Double]

    /// - Parameter frequencyFactors: the per-pair divisors of `.frequencyFactors` scaling (Llama 3.1's
    ///   `rope_freqs.weight`); required exactly then. `.llama3` scaling computes the same divisors itself.
    public init(config: ModelConfig, frequencyFactors: [Float]? = nil) throws {
        convention = config.ropeConvention
        headDim = config.headDim
        rotatedDims = config.ropeDimensions
        let pairs = rotatedDims / 2, dims = Double(config.ropeDimensions)
        var frequencies = (0..<pairs).map { i in pow(config.ropeBase, -2 * Double(i) / dims) }
        switch config.ropeScaling {
        case .none:
            break
        case let .linear(factor):
            // Positions divided by the factor is the same as every frequency divided by it.
            frequencies = frequencies.map { $0 / factor }
        case .frequencyFactors:
            guard let frequencyFactors, frequencyFactors.count == pairs else {
                throw CPUBackendError.unsupported(
                    "RoPE frequency factors: expected \(pairs) values, found \(frequencyFactors?.count ?? 0)")
            }
            frequencies = zip(frequencies, frequencyFactors).map { $0 / Double($1) }
        case let .llama3(parameters):
            // The same divisors as `rope_freqs.weight`, computed from config.json's rope_scaling.
            let factors = parameters.frequencyFactors(ropeBase: config.ropeBase, dimensions: config.ropeDimensions)
            frequencies = zip(frequencies, factors).map { $0 / $1 }
        case .yarn:
            throw CPUBackendError.unsupported("YaRN RoPE scaling (supported: none, linear, Llama 3.1 frequency factors)")
        }
        self.frequencies = frequencies
    }

    /// Fills the cos/sin tables of rows at positions `firstPosition ..< firstPosition + tokens`, once
    /// per forward call, for `apply` to use in every layer.
    ///
    ///     cos, sin: [tokens, rotatedDims / 2]
    public func fillTables(firstPosition: Int, tokens: Int, cos cosTable: UnsafeMutablePointer<Float>, sin sinTable: UnsafeMutablePointer<Float>) {
        let pairs = rotatedDims / 2
        for t in 0..<tokens {
            let position = Double(firstPosition + t)
            for i in 0..<pairs {
                // The angle in Double: p * f keeps its precision at long positions.
                let angle = position * frequencies[i]
                cosTable[t * pairs + i] = Float(cos(angle))
                sinTable[t * pairs + i] = Float(sin(angle))
            }
        }
    }

    /// Rotates every head of `tokens` rows in place with the tables of `fillTables`.
    ///
    ///     x: [tokens, heads * headDim] with row stride `rowStride`
    public func apply(
        _ x: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, heads: Int,
        cos cosTable: UnsafePointer<Float>, sin sinTable: UnsafePointer<Float>
    ) {
        let pairs = rotatedDims / 2
        // The step between paired channels: (2i, 2i+1) for GGUF files, (i, i + d/2) for rotate-half.
        let (pairStride, partnerOffset) = convention == .adjacentPairs ? (2, 1) : (1, pairs)
        for t in 0..<tokens {
            for h in 0..<heads {
                let head = x + t * rowStride + h * headDim
                for i in 0..<pairs {
                    let c = cosTable[t * pairs + i], s = sinTable[t * pairs + i]
                    let a = head + i * pairStride, b = a + partnerOffset
                    let x0 = a.pointee, x1 = b.pointee
                    a.pointee = x0 * c - x1 * s
                    b.pointee = x0 * s + x1 * c
                }
            }
        }
    }
}
