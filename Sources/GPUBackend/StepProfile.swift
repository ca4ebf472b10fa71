import CUDA
import Kernels

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

    /// The table `bench decode --profile` prints: label, calls, total and per-call microseconds,
    /// share of the step.
    public func table() -> String {
        let total = max(totalMicroseconds, 1e-9)
        func fixed(_ x: Double, _ digits: Int) -> String {
            var scale = 1.0
            for _ in 0..<digits { scale *= 10 }
            return "\((x * scale).rounded() / scale)"
        }
        func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
        var lines = [pad("kernel", 20) + pad("calls", 7) + pad("total us", 11) + pad("us/call", 10) + "share"]
        for e in entries.sorted(by: { $0.microseconds > $1.microseconds }) {
            lines.append(pad(e.label, 20) + pad("\(e.calls)", 7) + pad(fixed(e.microseconds, 1), 11)
                         + pad(fixed(e.microseconds / Double(e.calls), 2), 10) + fixed(100 * e.microseconds / total, 1) + "%")
        }
        lines.append(pad("step", 27) + fixed(total, 1) + (hostKeptUp ? "" : "  (the host fell behind the GPU: intervals include launch time)"))
        return lines.joined(separator: "\n")
    }
}

/// Records the events of one profiled step (`GPUModelRunner`'s `profiler` while a step is profiled).
final class StepProfiler {
    private let context: CUDAContext
    private var events: [CUDAEvent] = []
    private var labels: [String] = []
    private var used = 0

    init(context: CUDAContext) { self.context = context }

    /// Marks the end of the work queued since the previous mark as `label`'s.
    func mark(_ label: String, on stream: CUDAStream) throws {
        if used == events.count { events.append(try context.makeEvent()) }
        try stream.record(events[used])
        labels.append(label)
        used += 1
    }

    /// Whether the GPU has reached the first mark (the hold before the step has ended).
    func startHasRun() throws -> Bool { try events[0].isComplete() }

    /// Waits for the step and sums the intervals by label, in first-seen order. The first mark is
    /// the start (its label is not counted).
    func finish(hostKeptUp: Bool) throws -> StepProfile {
        guard used >= 2 else { return StepProfile(entries: [], hostKeptUp: hostKeptUp) }
        try events[used - 1].synchronize()
        var order: [String] = [], sums: [String: (calls: Int, us: Double)] = [:]
        for i in 1..<used {
            let us = try events[i].milliseconds(since: events[i - 1]) * 1000
            if sums[labels[i]] == nil { order.append(labels[i]) }
            sums[labels[i], default: (0, 0)].calls += 1
            sums[labels[i], default: (0, 0)].us += us
        }
        labels.removeAll(keepingCapacity: true)
        used = 0
        return StepProfile(entries: order.map { StepProfile.Entry(label: $0, calls: sums[$0]!.calls, microseconds: sums[$0]!.us) }, hostKeptUp: hostKeptUp)
    }
}
