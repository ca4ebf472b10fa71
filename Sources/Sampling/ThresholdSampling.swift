import Glibc

/// The sampling procedure of the GPU's `sample_rows` (sampling.cu), on the CPU: the reference the
/// GPU check compares with, and `ModelRunner.executeSampled`'s default.
///
/// The same distribution as `Sampler` (SamplingParameters' order: penalties, temperature, top-k,
/// top-p, min-p), found without sorting: each filter is a threshold on the tempered logits, ties
/// at a threshold all kept, and the draw walks the kept tokens in id order, the uniform scaled by
/// their mass (fp64). So for one seed the two procedures pick different tokens: `Sampler` walks
/// most-likely-first.
public enum ThresholdSampling {
    /// `logits` after the row's penalties (SamplingParameters.penalized).
    public static func penalized(_ logits: [Float], _ row: SamplingRow) -> [Float] {
        var w = logits
        for (id, count) in row.penaltyCounts where id >= 0 && Int(id) < w.count {
            w[Int(id)] = row.parameters.penalized(w[Int(id)], occurrences: count)
        }
        return w
    }

    /// Each row's token from `logits` ([rows.count, vocab], before penalties).
    public static func sampleRows(_ logits: [Float], vocab: Int, rows: [SamplingRow]) -> [SampledToken] {
        rows.indices.map { sample(Array(logits[($0 * vocab)..<(($0 + 1) * vocab)]), rows[$0]).token }
    }

    /// The token for `row` from `logits` ([vocab], before penalties), its log-probability under the
    /// penalized logits when asked for, and the smallest relative margin of any decision (how
    /// close the uniform or a filter came to flipping it: rows under ~1e-5 may differ on a GPU,
    /// whose expf and summation order differ in the last bits).
    public static func sample(_ logits: [Float], _ row: SamplingRow) -> (token: SampledToken, margin: Double) {
        let p = row.parameters
        let w = penalized(logits, row)
        let finite = w.filter { !$0.isNaN }
        let logSumExp = LogSoftmax.logSumExp(finite)
        let maximum = finite.max() ?? -.infinity
        func result(_ token: Int32, _ margin: Double) -> (SampledToken, Double) {
            (SampledToken(token: token, logprob: row.wantsLogprob ? w[Int(token)] - logSumExp : nil), margin)
        }
        if p.temperature == 0 || maximum == -.infinity {
            let best = Sampler.argmax(w)
            return result(best < 0 ? 0 : best, .infinity)
        }
        let inverseTemperature = 1 / p.temperature
        let t = w.map { $0 * inverseTemperature }
        let m = maximum * inverseTemperature
        let e = t.map { $0.isNaN ? 0 : expf($0 - m) }
        var margin = Double.infinity
        // The threshold on t: every kept token has t >= it (-inf never kept).
        var kept = t.indices.filter { t[$0] > -.infinity && !t[$0].isNaN }
        if p.topK > 0 && p.topK < kept.count {
            let descending = kept.map { t[$0] }.sorted(by: >)
            let threshold = descending[p.topK - 1]
            kept = kept.filter { t[$0] >= threshold }
        }
        if p.topP < 1 {
            let order = kept.sorted { t[$0] > t[$1] }
            let total = order.reduce(0.0) { $0 + Double(e[$1]) }
            let target = Double(p.topP) * total
            var mass = 0.0
            var threshold = t[order.last!]
            for id in order {
                mass += Double(e[id])
                if mass >= target {
                    threshold = t[id]
                    margin = min(margin, min(mass - target, target - (mass - Double(e[id]))) / total)
                    break
                }
            }
            kept = kept.filter { t[$0] >= threshold }
        }
        if p.minP > 0 {
            for id in kept { margin = min(margin, abs(Double(e[id]) - Double(p.minP)) / Double(p.minP)) }
            kept = kept.filter { e[$0] >= p.minP }
        }
        let total = kept.reduce(0.0) { $0 + Double(e[$1]) }
        let target = Double(row.uniform) * total
        var run = 0.0
        for id in kept {
            let next = run + Double(e[id])
            if target < next {
                margin = min(margin, min(target - run, next - target) / total)
                return result(Int32(id), margin)
            }
            run = next
        }
        return result(Int32(kept.last ?? 0), 0)
    }
}
