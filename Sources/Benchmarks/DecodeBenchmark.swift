import CUDA
import Engine
import GPUBackend
import Kernels
import Model

/// `comet bench decode`: whole decode steps of a synthetic model (DESIGN.md §4: a real shape,
/// random weights made on the GPU) at batch B and context L, W4AxKV4 against our bf16 baseline
/// (the same runner with cuBLASLt bf16 GEMMs and a bf16 KV cache), in the same run.
///
/// A step is what the engine's runner does for greedy requests: upload ids/positions/block tables,
/// every layer, the LM head, the argmax on the GPU and the token ids back on the host; wall-clock
/// time per step, after warm-up. With several GPUs both sides run tensor parallel over them.
public struct DecodeBenchmark {
    public struct Row: Sendable, Codable {
        public let model: String, batch: Int, length: Int
        /// GPUs the model is split over.
        public let tensorParallel: Int
        /// Milliseconds per decode step.
        public let w4axKV4: Double, bf16: Double?
        public var w4axTokensPerSecond: Double { Double(batch) / w4axKV4 * 1000 }
        public var bf16TokensPerSecond: Double? { bf16.map { Double(batch) / $0 * 1000 } }
        public var speedup: Double? { bf16.map { $0 / w4axKV4 } }
        /// With `profile`: one eager step of each runner, kernel by kernel (`StepProfile`).
        public var w4axProfile: [StepProfile.Entry]? = nil, bf16Profile: [StepProfile.Entry]? = nil
    }

    /// One per GPU, in rank order.
    public let libraries: [KernelLibrary]
    /// Where cuBLASLt and NCCL are found.
    public let search: LibrarySearch

    public init(libraries: [KernelLibrary], search: LibrarySearch) {
        self.libraries = libraries
        self.search = search
    }

    /// Times `steps` decode steps for each batch size, for W4AxKV4 and (unless `baseline` is false) bf16.
    /// `profile`: after timing each batch size, one more step runs eagerly with an event after
    /// every kernel (`GPUModelRunner.profile`; one GPU only), and its table goes to `log`.
    public func run(model name: String, config: ModelConfig, batches: [Int], length: Int, steps: Int = 16, baseline: Bool = true,
                    profile: Bool = false, log: (String) -> Void = { _ in }) throws -> [Row] {
        var times: [Bool: [(ms: Double, profile: StepProfile?)]] = [:]
        for quantized in baseline ? [true, false] : [true] {
            log("building \(name) \(quantized ? "W4AxKV4" : "bf16") weights on \(libraries.count) GPU(s)")
            do {
                times[quantized] = try time(config: config, quantized: quantized, batches: batches, length: length, steps: steps,
                                            profile: profile)
                for (batch, result) in zip(batches, times[quantized]!) {
                    if let p = result.profile { log("\(quantized ? "W4AxKV4" : "bf16") B=\(batch) L=\(length), one eager step:\n\(Self.table(p))") }
                }
            } catch where !quantized {
                // The bf16 baseline may not fit (70B in bf16 is 141 GB): say so, keep our rows.
                log("bf16 baseline not run: \(error)")
            }
        }
        return batches.indices.map { i in
            Row(model: name, batch: batches[i], length: length, tensorParallel: libraries.count, w4axKV4: times[true]![i].ms,
                bf16: times[false]?[i].ms, w4axProfile: times[true]![i].profile?.entries, bf16Profile: times[false]?[i].profile?.entries)
        }
    }

    private func time(
        config: ModelConfig, quantized: Bool, batches: [Int], length: Int, steps: Int, profile: Bool
    ) throws -> [(ms: Double, profile: StepProfile?)] {
        let maxBatch = batches.max()!, blockSize = 16
        let positions = length + steps + 4
        let blocksPerSequence = (positions + blockSize - 1) / blockSize
        let runner = try GPUWeightsPlan.synthetic(config, quantized: quantized).runner(
            libraries: libraries, search: search,
            options: GPURunnerOptions(kvBlockSize: blockSize, kvBlocks: maxBatch * blocksPerSequence, maxStepTokens: maxBatch,
                                      maxStepSequences: maxBatch, contextLength: positions))
        // The cache's contents do not change the speed; fill it with small finite values.
        try runner.fillKVCache(byte: 0x3C)
        var tokens: [Int32] = []
        return try batches.map { batch in
            let tables = (0..<batch).map { i in (0..<blocksPerSequence).map { Int32(i * blocksPerSequence + $0) } }
            func sequences(_ s: Int) -> [StepSequence] {
                (0..<batch).map { i in
                    StepSequence(tokens: [Int32((i * 7919 + s) % config.vocabularySize)], firstPosition: length + s,
                                 blockTable: tables[i], needsLogits: true)
                }
            }
            func step(_ s: Int) throws { try runner.executeGreedy(sequences(s), tokens: &tokens) }
            for s in 0..<3 { try step(s) }
            let start = ContinuousClock.now
            for s in 0..<steps { try step(3 + s) }
            let elapsed = ContinuousClock.now - start
            let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            // The profiled step writes position length + 3 + steps, which the runner has room for.
            let profiled = profile ? try (runner as? GPUModelRunner)?.profile(sequences(3 + steps)) : nil
            return (ms / Double(steps), profiled)
        }
    }

    /// A profiled step as `--profile` prints it: label, calls, total and per-call microseconds,
    /// share of the step, largest first.
    static func table(_ profile: StepProfile) -> String {
        let total = max(profile.totalMicroseconds, 1e-9)
        var lines = [padded("kernel", 20) + padded("calls", 7) + padded("total us", 11) + padded("us/call", 10) + "share"]
        for e in profile.entries.sorted(by: { $0.microseconds > $1.microseconds }) {
            lines.append(padded(e.label, 20) + padded("\(e.calls)", 7) + padded(fixed(e.microseconds, 1), 11)
                         + padded(fixed(e.microseconds / Double(e.calls), 2), 10) + fixed(100 * e.microseconds / total, 1) + "%")
        }
        lines.append(padded("step", 27) + fixed(total, 1)
                     + (profile.hostKeptUp ? "" : "  (the host fell behind the GPU: intervals include launch time)"))
        return lines.joined(separator: "\n")
    }

    public static func table(_ rows: [Row]) -> String {
        func f(_ x: Double?, _ digits: Int = 2) -> String { x.map { fixed($0, digits) } ?? "-" }
        var lines = ["model      TP  B     L   W4AxKV4 ms  tok/s      bf16 ms  tok/s      speedup"]
        for r in rows {
            lines.append([padded(r.model, 10), padded("\(r.tensorParallel)", 3), padded("\(r.batch)", 5), padded("\(r.length)", 5),
                          padded(f(r.w4axKV4, 3), 11), padded(f(r.w4axTokensPerSecond, 0), 10), padded(f(r.bf16, 3), 8),
                          padded(f(r.bf16TokensPerSecond, 0), 10), f(r.speedup) + "x"].joined(separator: " "))
        }
        return lines.joined(separator: "\n")
    }
}
