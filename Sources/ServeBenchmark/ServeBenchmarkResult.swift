/// The figures of one `comet bench serve` run. Times are in milliseconds, throughputs per second.
public struct ServeBenchmarkResult: Codable, Sendable {
    /// Mean and percentiles of one per-request measure.
    public struct Distribution: Codable, Sendable, Equatable {
        public var mean: Double
        public var p50: Double
        public var p99: Double

        /// nil for no values; percentiles interpolate linearly between ranks (numpy's default).
        init?(_ values: [Double]) {
            guard !values.isEmpty else { return nil }
            let sorted = values.sorted()
            mean = sorted.reduce(0, +) / Double(sorted.count)
            p50 = Self.percentile(sorted, 0.50)
            p99 = Self.percentile(sorted, 0.99)
        }

        static func percentile(_ sorted: [Double], _ q: Double) -> Double {
            let rank = q * Double(sorted.count - 1)
            let below = Int(rank.rounded(.down))
            let above = min(below + 1, sorted.count - 1)
            return sorted[below] + (sorted[above] - sorted[below]) * (rank - Double(below))
        }
    }

    public var model: String
    public var url: String
    public var concurrency: Int
    public var requests: Int
    public var inputLength: Int
    public var outputLength: Int
    public var succeeded: Int
    public var failed: Int
    /// The first few failures, as the client saw them.
    public var errors: [String]
    public var durationSeconds: Double
    public var inputTokens: Int
    public var outputTokens: Int
    public var requestThroughput: Double
    /// Generated tokens per second over the whole run.
    public var outputThroughput: Double
    /// Prompt plus generated tokens per second.
    public var totalThroughput: Double
    public var timeToFirstTokenMilliseconds: Distribution?
    public var timePerOutputTokenMilliseconds: Distribution?
    public var latencyMilliseconds: Distribution?

    init(configuration: ServeBenchmark.Configuration, model: String, samples: [RequestSample], duration: Duration) {
        let succeeded = samples.filter { $0.error == nil }
        let seconds = Self.seconds(duration)
        self.model = model
        url = configuration.url
        concurrency = configuration.concurrency
        requests = configuration.requests
        inputLength = configuration.inputLength
        outputLength = configuration.outputLength
        self.succeeded = succeeded.count
        failed = samples.count - succeeded.count
        errors = Array(samples.compactMap(\.error).prefix(5))
        durationSeconds = seconds
        inputTokens = succeeded.compactMap(\.promptTokens).reduce(0, +)
        outputTokens = succeeded.compactMap(\.outputTokens).reduce(0, +)
        requestThroughput = Double(succeeded.count) / seconds
        outputThroughput = Double(outputTokens) / seconds
        totalThroughput = Double(inputTokens + outputTokens) / seconds
        timeToFirstTokenMilliseconds = Distribution(succeeded.compactMap(\.firstToken).map { Self.seconds($0) * 1000 })
        timePerOutputTokenMilliseconds = Distribution(succeeded.compactMap(\.timePerOutputToken).map { Self.seconds($0) * 1000 })
        latencyMilliseconds = Distribution(succeeded.compactMap(\.latency).map { Self.seconds($0) * 1000 })
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }

    /// The report `comet bench serve` prints.
    public var table: String {
        func format(_ value: Double, _ decimals: Int = 1) -> String {
            let scale = (0..<decimals).reduce(1.0) { value, _ in value * 10 }
            let rounded = (value * scale).rounded() / scale
            return decimals == 0 ? String(Int(rounded)) : String(rounded)
        }
        func row(_ name: String, _ value: String) -> String {
            name + String(repeating: " ", count: max(22 - name.count, 1)) + value
        }
        func distribution(_ d: Distribution?) -> String {
            guard let d else { return "-" }
            return "mean \(format(d.mean, 2))  p50 \(format(d.p50, 2))  p99 \(format(d.p99, 2))"
        }
        var lines = [
            "comet bench serve: \(url), model \(model)",
            "\(requests) requests, concurrency \(concurrency), \(inputLength) tokens in, \(outputLength) out",
            row("succeeded", "\(succeeded) (\(failed) failed)"),
            row("duration", "\(format(durationSeconds, 3)) s"),
            row("requests/s", format(requestThroughput, 2)),
            row("output tokens/s", format(outputThroughput)),
            row("total tokens/s", format(totalThroughput)),
            row("TTFT ms", distribution(timeToFirstTokenMilliseconds)),
            row("TPOT ms", distribution(timePerOutputTokenMilliseconds)),
            row("latency ms", distribution(latencyMilliseconds)),
        ]
        for error in errors { lines.append("error: \(error.prefix(300))") }
        return lines.joined(separator: "\n")
    }
}
