import CUDA

/// Where a step's GPU time goes, kernel by kernel: `GPUModelRunner.profile(_:)` runs one step
/// eagerly with an event after every launch and sums the intervals by label ("qkv.gemm",
/// "attention", ...) over the layers.
///
/// A step is queued behind a `hold_stream` kernel, so the host has queued all of it before the
/// GPU starts: each interval is then one kernel's time plus the GPU's own gap to the next launch,
/// not the host's launch rate. `hostKeptUp` says whether that held (false: the hold ended before
/// the host had queued the step, and the later intervals include host time).
///
/// Eager launches: a CUDA-graph step (what decode runs) has shorter gaps between kernels, so the
/// total is a little above the graph's step time.
public final class StepProfile {
    public struct Entry: Sendable, Codable, Equatable {
        public let label: String
        /// Launches with this label in the step (one per layer for a layer's kernels).
        public let calls: Int
        public let microseconds: Double
    }

    public let entries: [Entry]
    /// Whether the whole step was queued before the GPU reached it (see the type's comment).
    public let hostKeptUp: Bool
    public var totalMicroseconds: Double { entries.reduce(0) { $0 + $1.microseconds } }

    init(entries: [Entry], hostKeptUp: Bool) {
        self.entries = entries
        self.hostKeptUp = hostKeptUp
    }
}

/// Records the events of one profiled step (`GPUModelRunner`'s `profiler` while a step is profiled).
final class StepProfiler {
    private let context: CUDAContext
    /// One event per mark, with its label; the first mark is the start.
    private var events: [CUDAEvent] = [], labels: [String] = []

    init(context: CUDAContext) { self.context = context }

    /// Marks the end of the work queued since the previous mark as `label`'s.
    func mark(_ label: String, on stream: CUDAStream) throws {
        events.append(try context.makeEvent())
        try stream.record(events[events.count - 1])
        labels.append(label)
    }

    /// Call once the whole step is queued: whether the GPU was still before the start mark (the
    /// host kept up), then waits for the step and sums the intervals by label, in first-seen order.
    func finish() throws -> StepProfile {
        let hostKeptUp = try !(events.first?.isComplete() ?? true)
        guard events.count >= 2 else { return StepProfile(entries: [], hostKeptUp: hostKeptUp) }
        try events[events.count - 1].synchronize()
        var order: [String] = [], sums: [String: (calls: Int, us: Double)] = [:]
        for i in 1..<events.count {
            let us = try events[i].milliseconds(since: events[i - 1]) * 1000
            if sums[labels[i]] == nil { order.append(labels[i]) }
            sums[labels[i], default: (0, 0)].calls += 1
            sums[labels[i], default: (0, 0)].us += us
        }
        return StepProfile(entries: order.map { StepProfile.Entry(label: $0, calls: sums[$0]!.calls, microseconds: sums[$0]!.us) }, hostKeptUp: hostKeptUp)
    }
}
