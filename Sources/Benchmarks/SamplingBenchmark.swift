import CPUReference
import CUDA
import Dispatch
import GPUBackend
import Kernels
import Sampling

/// `comet bench sampling`: a step's rows sampled on the GPU (DeviceSampler: parameters up,
/// tokens down) against what the engine does without it, in the same run on the same logits: the
/// fp32 logits copied to pinned host memory and each row sampled by its `Sampler` on all cores.
/// Wall-clock per step, median of the iterations, after warm-up.
public struct SamplingBenchmark {
    public struct Row: Sendable, Codable {
        public let device: String
        public let rows: Int
        public let vocab: Int
        public let parameters: String
        /// Milliseconds per step.
        public let gpu: Double
        public let cpu: Double
        public var speedup: Double { cpu / gpu }
    }

    public let library: KernelLibrary
    public let iterations: Int

    public init(library: KernelLibrary, iterations: Int = 10) {
        self.library = library
        self.iterations = iterations
    }

    /// Chat-style settings: temperature 0.7, top-p 0.9, repetition penalty 1.1 over 64 tokens.
    public static let parameters = SamplingParameters(temperature: 0.7, topP: 0.9, repetitionPenalty: 1.1)

    public func run(batches: [Int], vocab: Int) throws -> [Row] {
        let context = library.context, stream = try context.makeStream()
        let maxRows = batches.max() ?? 1
        let sampler = try DeviceSampler(library: library, maxRows: maxRows)
        // Logits like a model's: a spread of values with a few dozen likely tokens per row.
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        var host = (0..<maxRows * vocab).map { _ in Float.random(in: -6...6, using: &random) }
        for r in 0..<maxRows { for _ in 0..<40 { host[r * vocab + Int.random(in: 0..<vocab, using: &random)] += 10 } }
        let logits = try context.allocate(Float.self, count: host.count)
        try logits.copy(from: host)
        let pinned = try context.allocatePinned(Float.self, count: host.count)
        let history = (0..<64).map { _ in Int32.random(in: 0..<Int32(vocab), using: &random) }

        return try batches.map { rows in
            var samplers = (0..<rows).map { row in
                var parameters = Self.parameters
                parameters.seed = UInt64(row)
                return Sampler(parameters)
            }
            // The penalties compound over iterations on the device copy; the speed does not depend on it.
            let gpu = try wallMilliseconds(iterations) {
                let sampling = samplers.indices.map { samplers[$0].deviceRow(history: history, vocabulary: vocab, wantsLogprob: false) }
                _ = try sampler.sample(logits.prefix(rows * vocab), vocab: vocab, rows: sampling, on: stream)
            }
            let cpu = try wallMilliseconds(iterations) {
                try context.copy(bytes: rows * vocab * 4, from: logits.pointer, toHost: pinned.baseAddress, on: stream)
                try stream.synchronize()
                // Each iteration touches only its own row's sampler and logits (as EngineLoop.sampleRows).
                nonisolated(unsafe) let base = UnsafeBufferPointer(start: pinned.baseAddress, count: rows * vocab)
                samplers.withUnsafeMutableBufferPointer { samplers in
                    nonisolated(unsafe) let samplers = samplers
                    DispatchQueue.concurrentPerform(iterations: rows) { r in
                        _ = samplers[r].sample(base[(r * vocab)..<((r + 1) * vocab)], history: history, topLogprobs: nil)
                    }
                }
            }
            return Row(device: context.device.name, rows: rows, vocab: vocab, parameters: "T 0.7, top-p 0.9, repetition 1.1 (64 tokens)",
                       gpu: gpu, cpu: cpu)
        }
    }

    /// Median wall-clock milliseconds of `body`, after two untimed runs.
    func wallMilliseconds(_ iterations: Int, _ body: () throws -> Void) throws -> Double {
        for _ in 0..<2 { try body() }
        var times: [Double] = []
        for _ in 0..<iterations {
            let start = ContinuousClock.now
            try body()
            let elapsed = ContinuousClock.now - start
            times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
        }
        return times.sorted()[times.count / 2]
    }

    public static func table(_ rows: [Row]) -> String {
        var lines = ["sampling \(rows.first?.vocab ?? 0)-token rows on \(rows.first?.device ?? "?"): GPU (DeviceSampler) vs logits to the host + Sampler on all cores; \(rows.first?.parameters ?? ""); ms per step",
                     padded("rows", 6) + padded("gpu ms", 10) + padded("cpu ms", 10) + "speedup"]
        for row in rows {
            lines.append(padded("\(row.rows)", 6) + padded(fixed(row.gpu, 3), 10) + padded(fixed(row.cpu, 3), 10) + fixed(row.speedup, 1) + "x")
        }
        return lines.joined(separator: "\n")
    }
}
