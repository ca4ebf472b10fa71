#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Attention of one new query token per sequence over that sequence's cached keys and values,
/// with grouped-query heads: the reference of the decode attention kernels.
public enum DecodeAttention {
    /// - Parameters:
    ///   - q: [sequences, qHeads, headDim].
    ///   - keys, values: per sequence, [length, kvHeads, headDim] (already dequantized).
    ///   - scale: the softmax scale, usually 1 / sqrt(headDim).
    /// - Returns: [sequences, qHeads, headDim]; softmax and sums in Double; zeros for a
    ///   sequence with nothing cached.
    public static func reference(
        q: [Float], keys: [[Float]], values: [[Float]], qHeads: Int, kvHeads: Int, headDim: Int, scale: Float
    ) -> [Float] {
        let sequences = keys.count, group = qHeads / kvHeads
        precondition(q.count == sequences * qHeads * headDim && values.count == sequences && qHeads % kvHeads == 0)
        var out = [Float](repeating: 0, count: q.count)
        for s in 0..<sequences {
            let length = keys[s].count / (kvHeads * headDim)
            for h in 0..<qHeads where length > 0 {  // an empty sequence attends to nothing: zeros
                let kv = h / group
                var scores = [Double](repeating: 0, count: length)
                for t in 0..<length {
                    var dot = 0.0
                    for d in 0..<headDim {
                        dot += Double(q[(s * qHeads + h) * headDim + d]) * Double(keys[s][(t * kvHeads + kv) * headDim + d])
                    }
                    scores[t] = dot * Double(scale)
                }
                let top = scores.max() ?? 0
                let weights = scores.map { exp($0 - top) }
                let total = weights.reduce(0, +)
                for d in 0..<headDim {
                    var sum = 0.0
                    for t in 0..<length { sum += weights[t] * Double(values[s][(t * kvHeads + kv) * headDim + d]) }
                    out[(s * qHeads + h) * headDim + d] = Float(sum / total)
                }
            }
        }
        return out
    }
}
