/// Per-input-channel statistics of one linear layer's input, accumulated over calibration
/// batches: what FMPQ chooses its outlier channels from.
///
/// The forward pass feeds every batch that reaches the layer:
///
///     var stats = CalibrationStatistics(channels: 576)
///     try stats.add(x, positions: positions)   // x: [tokens, 576], positions: [tokens]
///
/// Rows at position 0 are skipped: the attention-sink token inflates the abs-max of down_proj
/// inputs by up to 1000x (DESIGN.md §2), which would make every sink-driven channel look like
/// an outlier although no other token needs it in INT8.
public struct CalibrationStatistics: Sendable, Equatable, Codable {
    /// K, the input channels of the layer.
    public let channels: Int
    /// [channels]: the largest |x| seen in each channel.
    public private(set) var absMax: [Float]
    /// [channels]: the sum of x² over the rows counted (Double: 10^5 rows of fp32 squares).
    public private(set) var sumOfSquares: [Double]
    /// Rows (tokens) counted so far; sink rows are not counted.
    public private(set) var rows: Int

    public init(channels: Int) {
        precondition(channels > 0, "a layer has at least one input channel")
        self.channels = channels
        absMax = [Float](repeating: 0, count: channels)
        sumOfSquares = [Double](repeating: 0, count: channels)
        rows = 0
    }

    /// Adds a batch `x` ([positions.count, channels], row-major), skipping rows whose position is
    /// 0 (the attention sink) unless `includeSink` is set.
    public mutating func add(_ x: [Float], positions: [Int32], includeSink: Bool = false) throws {
        guard x.count == positions.count * channels else {
            throw QuantError.shapeMismatch("\(x.count) activations for \(positions.count) tokens of \(channels) channels")
        }
        for (t, position) in positions.enumerated() where includeSink || position != 0 {
            addRow(x, row: t)
        }
    }

    /// Adds every row of `x` ([tokens, channels]), for inputs with no sink (or synthetic data).
    public mutating func add(_ x: [Float], tokens: Int) throws {
        guard x.count == tokens * channels else {
            throw QuantError.shapeMismatch("\(x.count) activations for \(tokens) tokens of \(channels) channels")
        }
        for t in 0..<tokens { addRow(x, row: t) }
    }

    /// Combines statistics gathered separately (e.g. one accumulator per thread or per text shard).
    public mutating func merge(_ other: CalibrationStatistics) throws {
        guard other.channels == channels else {
            throw QuantError.shapeMismatch("merging statistics of \(other.channels) channels into \(channels)")
        }
        for c in 0..<channels {
            absMax[c] = max(absMax[c], other.absMax[c])
            sumOfSquares[c] += other.sumOfSquares[c]
        }
        rows += other.rows
    }

    /// [channels]: the root mean square of each channel (0 before any row is counted).
    public var rms: [Float] {
        guard rows > 0 else { return [Float](repeating: 0, count: channels) }
        return sumOfSquares.map { Float(($0 / Double(rows)).squareRoot()) }
    }

    private mutating func addRow(_ x: [Float], row t: Int) {
        let base = t * channels
        for c in 0..<channels {
            let v = x[base + c]
            absMax[c] = max(absMax[c], abs(v))
            sumOfSquares[c] += Double(v * v)
        }
        rows += 1
    }
}
