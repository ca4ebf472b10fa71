/// The GPTQ Hessian of one linear layer, H = 2·XᵀX / rows over its calibration inputs X.
///
/// Fed batch by batch like `CalibrationStatistics`. Unlike those statistics it keeps the
/// attention-sink row by default: the sink's output is real and GPTQ should reproduce it;
/// `includeSink: false` is there to measure the alternative (its 1000x down_proj values make
/// it dominate H for those channels).
public struct GPTQHessian: Sendable, Equatable {
    /// K, the input channels.
    public let channels: Int
    /// [channels, channels]: Σ x·xᵀ over the rows counted; only the upper triangle is kept up
    /// to date while accumulating (see `matrix`).
    private var upper: [Double]
    /// Rows (tokens) counted so far.
    public private(set) var rows: Int

    public init(channels: Int) {
        precondition(channels > 0, "a layer has at least one input channel")
        self.channels = channels
        upper = [Double](repeating: 0, count: channels * channels)
        rows = 0
    }

    /// Adds every row of `x` ([tokens, channels], row-major).
    public mutating func add(_ x: [Float], tokens: Int) throws {
        guard tokens >= 0, x.count == tokens * channels else {
            throw QuantError.shapeMismatch("\(x.count) activations for \(tokens) tokens of \(channels) channels")
        }
        addRows(x, rows: Array(0..<tokens))
    }

    /// Adds the rows of `x` ([positions.count, channels]), skipping position 0 unless `includeSink`.
    public mutating func add(_ x: [Float], positions: [Int32], includeSink: Bool = true) throws {
        guard x.count == positions.count * channels else {
            throw QuantError.shapeMismatch("\(x.count) activations for \(positions.count) tokens of \(channels) channels")
        }
        addRows(x, rows: positions.indices.filter { includeSink || positions[$0] != 0 })
    }

    /// [channels, channels]: H = 2·XᵀX / rows, symmetric (GPTQ's normalization; the scale does
    /// not change the result, the dampening is relative to the diagonal).
    public var matrix: [Double] {
        let k = channels
        var h = [Double](repeating: 0, count: k * k)
        let norm = rows > 0 ? 2 / Double(rows) : 0
        for i in 0..<k {
            for j in i..<k {
                h[i * k + j] = upper[i * k + j] * norm
                h[j * k + i] = h[i * k + j]
            }
        }
        return h
    }

    /// XᵀX of the chosen rows as dot products of channel columns: transposing the batch once
    /// makes every dot product contiguous, and rows i of the triangle are independent, so
    /// they run in parallel with no shared writes.
    private mutating func addRows(_ x: [Float], rows chosen: [Int]) {
        let k = channels, t = chosen.count
        guard t > 0 else { return }
        var columns = [Float](repeating: 0, count: k * t)  // [channels, chosen rows]
        for (r, row) in chosen.enumerated() {
            for c in 0..<k { columns[c * t + r] = x[row * k + c] }
        }
        columns.withUnsafeBufferPointer { cols in
            upper.withUnsafeMutableBufferPointer { h in
                let h = SharedBuffer(h)
                let cols = SharedBuffer(UnsafeMutableBufferPointer(mutating: cols))
                parallelFor(k) { i in
                    for j in i..<k {
                        h[i * k + j] += Double(dot(cols.base + i * t, cols.base + j * t, t))
                    }
                }
            }
        }
        rows += t
    }
}
