import Engine
import Prometheus

/// The server's Prometheus metrics, in a registry of its own (no global metrics system): request
/// counts by endpoint and status, token counts, time to first token and time per output token, and
/// the engine's load, read from `EngineStatistics` at each scrape.
public final class ServerMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let promptTokens: Counter
    private let generatedTokens: Counter
    private let timeToFirstToken: DurationHistogram
    private let timePerOutputToken: DurationHistogram
    private let kvBlocksInUse: Gauge
    private let kvBlocksTotal: Gauge
    private let runningRequests: Gauge
    private let waitingRequests: Gauge
    private let batchSize: Gauge
    private let preemptions: Gauge
    private let prefixCacheHitTokens: Gauge

    /// Seconds; TTFT spans queueing and prefill, so it reaches further than TPOT.
    static let timeToFirstTokenBuckets: [Duration] = [
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]
    static let timePerOutputTokenBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50),
        .milliseconds(100), .milliseconds(200), .milliseconds(500), .seconds(1), .seconds(2),
    ]

    public init() {
        promptTokens = registry.makeCounter(descriptor: Self.name("prompt_tokens", unit: "total", "Prompt tokens of finished requests."))
        generatedTokens = registry.makeCounter(
            descriptor: Self.name("generation_tokens", unit: "total", "Generated tokens of finished requests."))
        timeToFirstToken = registry.makeDurationHistogram(
            descriptor: Self.name("time_to_first_token", unit: "seconds", "From the request's arrival to its first generated token."),
            buckets: Self.timeToFirstTokenBuckets)
        timePerOutputToken = registry.makeDurationHistogram(
            descriptor: Self.name("time_per_output_token", unit: "seconds", "Mean time between generated tokens after the first, per request."),
            buckets: Self.timePerOutputTokenBuckets)
        kvBlocksInUse = registry.makeGauge(descriptor: Self.name("kv_blocks_in_use", "KV cache blocks held by sequences."))
        kvBlocksTotal = registry.makeGauge(descriptor: Self.name("kv_blocks", unit: "total", "KV cache blocks in all."))
        runningRequests = registry.makeGauge(descriptor: Self.name("requests_running", "Requests being generated."))
        waitingRequests = registry.makeGauge(descriptor: Self.name("requests_waiting", "Requests queued for the engine."))
        batchSize = registry.makeGauge(descriptor: Self.name("batch_size", "Sequences in the engine's last step."))
        preemptions = registry.makeGauge(descriptor: Self.name("preemptions", "Sequences preempted since the engine started."))
        prefixCacheHitTokens = registry.makeGauge(
            descriptor: Self.name("prefix_cache_hit_tokens", "Prompt tokens served from the prefix cache since the engine started."))
    }

    /// "comet_<metric>_<unit>".
    private static func name(_ metric: String, unit: String = "", _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "comet", metricName: metric, unitName: unit, helpText: help)
    }

    /// Counts one answered request. `endpoint` is the route ("/v1/completions"), never the raw path,
    /// so that the label set stays bounded.
    func recordRequest(endpoint: String, status: Int) {
        registry.makeCounter(
            descriptor: Self.name("http_requests", unit: "total", "HTTP requests by route and status code."),
            labels: [("endpoint", endpoint), ("status", String(status))]
        ).increment()
    }

    /// Records a finished generation.
    func recordGeneration(usage: Usage, timing: GenerationTiming) {
        promptTokens.increment(by: Int64(usage.promptTokens))
        generatedTokens.increment(by: Int64(usage.completionTokens))
        if let ttft = timing.timeToFirstToken { timeToFirstToken.record(ttft) }
        if let tpot = timing.timePerOutputToken { timePerOutputToken.record(tpot) }
    }

    /// The Prometheus text exposition, the engine gauges read from `statistics` now.
    func exposition(_ statistics: EngineStatistics) -> String {
        kvBlocksInUse.set(Int64(statistics.kvBlocksInUse))
        kvBlocksTotal.set(Int64(statistics.kvBlocksTotal))
        runningRequests.set(Int64(statistics.runningRequests))
        waitingRequests.set(Int64(statistics.waitingRequests))
        batchSize.set(Int64(statistics.lastBatchSize))
        preemptions.set(Int64(statistics.preemptions))
        prefixCacheHitTokens.set(Int64(statistics.prefixCacheHitTokens))
        return registry.emitToString()
    }
}

/// When one request's tokens arrived, for TTFT and TPOT.
struct GenerationTiming: Sendable {
    let start: ContinuousClock.Instant
    private(set) var firstToken: ContinuousClock.Instant?
    private(set) var lastToken: ContinuousClock.Instant?
    private(set) var tokens = 0

    init(start: ContinuousClock.Instant = .now) {
        self.start = start
    }

    mutating func received(_ count: Int, at now: ContinuousClock.Instant = .now) {
        guard count > 0 else { return }
        if firstToken == nil { firstToken = now }
        lastToken = now
        tokens += count
    }

    var timeToFirstToken: Duration? { firstToken.map { $0 - start } }

    /// (last - first) / (tokens - 1): undefined for fewer than two tokens.
    var timePerOutputToken: Duration? {
        guard let firstToken, let lastToken, tokens > 1 else { return nil }
        return (lastToken - firstToken) / (tokens - 1)
    }
}
