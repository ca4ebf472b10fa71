import ArgumentParser
import CUDA
import Engine
import GPUBackend
import FoundationEssentials
import Model

extension Bench {
    /// Offline serving throughput: every request submitted at once, as vLLM's benchmark_throughput.
    struct Throughput: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Offline serving throughput of the engine (CPU or GPU runner): N requests of random tokens submitted at once.",
            discussion: "Prints input and output tokens/s over the whole run, and per-request time to first token (TTFT) and time per output token after the first (TPOT), p50 and p99. Every request generates exactly --output-len tokens (end-of-text is ignored).")

        @OptionGroup var modelOptions: ModelOptions
        @OptionGroup var backend: BackendOptions

        @Option(help: "GPU only: a synthetic model of this shape instead of --model (llama3-8b or llama3-70b: random W4AxKV4 weights, or bf16 with --bf16).")
        var synthetic: String?

        @Flag(help: "With --synthetic: bf16 weights and KV cache (the baseline) instead of W4AxKV4.")
        var bf16 = false

        @Option(help: "Requests, all submitted at once.")
        var requests = 32

        @Option(help: "Prompt tokens of each request (random ids, seeded).")
        var inputLen = 128

        @Option(help: "Generated tokens of each request.")
        var outputLen = 128

        @Option(help: "The most sequences in one step.")
        var maxBatch = 32

        @Option(help: "The most tokens in one step (prompt chunks and decodes together).")
        var stepTokens = 256

        @Option(help: "KV cache positions (default: enough for every request at once, at most 32768).")
        var kvTokens: Int?

        @Option(help: "Seed of the random prompts.")
        var seed: UInt64 = 0

        @Option(help: "Also write the result as JSON to this file.")
        var json: String?

        func validate() throws {
            guard requests >= 1 else { throw ValidationError("--requests must be at least 1") }
            guard inputLen >= 1, outputLen >= 1 else { throw ValidationError("--input-len and --output-len must be at least 1") }
            guard maxBatch >= 1, stepTokens >= 1 else { throw ValidationError("--max-batch and --step-tokens must be at least 1") }
            if let kvTokens, kvTokens < 1 { throw ValidationError("--kv-tokens must be at least 1") }
            try validateSynthetic()
        }

        /// What one run measured.
        struct Result: Codable {
            var requests: Int
            var inputLength: Int
            var outputLength: Int
            var seconds: Double
            var inputTokensPerSecond: Double
            var outputTokensPerSecond: Double
            var ttftP50: Double
            var ttftP99: Double
            var tpotP50: Double
            var tpotP99: Double
            var preemptions: Int
            var runner: String
        }

        func run() async throws {
            let kv = kvTokens ?? min(requests * (inputLen + outputLen), synthetic == nil ? 32768 : 1 << 20)
            let engine: LLMEngine, description: String, vocabulary: Int
            if let synthetic {
                (engine, description) = try syntheticEngine(synthetic, kvTokens: kv)
                vocabulary = engine.tokenizer.vocabularySize
            } else {
                let (source, checkpoint) = try backend.open(modelOptions)
                let tokenizer = try modelOptions.tokenizer(source)
                vocabulary = source.config.vocabularySize
                (engine, description) = try backend.engine(
                    modelOptions, source: source, checkpoint: checkpoint, tokenizer: tokenizer, contextLength: inputLen + outputLen,
                    kvTokens: kv, maxBatch: maxBatch, stepTokens: stepTokens, maxWaiting: requests)
            }
            var random = SeededRandom(seed: seed)
            let prompts = (0..<requests).map { _ in (0..<inputLen).map { _ in Int32(random.next() % UInt64(vocabulary)) } }

            let start = ContinuousClock.now
            let timings: [RequestTiming]
            do {
                timings = try await withThrowingTaskGroup(of: RequestTiming.self) { group in
                    for (i, prompt) in prompts.enumerated() {
                        let stream = try engine.generate(GenerationRequest(
                            id: "\(i)", prompt: prompt, maxTokens: outputLen, ignoreEndOfText: true))
                        group.addTask { try await RequestTiming(stream, start: start) }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            } catch {
                await engine.shutdown()
                throw fail("\(error)")
            }
            let total = seconds(since: start)
            let statistics = engine.statistics
            await engine.shutdown()

            let ttft = timings.map(\.timeToFirstToken).sorted()
            let tpot = timings.compactMap(\.timePerOutputToken).sorted()
            let result = Result(
                requests: requests, inputLength: inputLen, outputLength: outputLen, seconds: total,
                inputTokensPerSecond: Double(requests * inputLen) / total,
                outputTokensPerSecond: Double(timings.reduce(0) { $0 + $1.tokens }) / total,
                ttftP50: percentile(ttft, 50), ttftP99: percentile(ttft, 99),
                tpotP50: percentile(tpot, 50), tpotP99: percentile(tpot, 99),
                preemptions: statistics.preemptions, runner: description)
            print("""
                \(requests) requests x \(inputLen) in / \(outputLen) out on the \(description) (\
                batch <= \(maxBatch), <= \(stepTokens) tokens/step, KV \(kv) positions): \(format2(total)) s
                  throughput: \(format1(result.inputTokensPerSecond)) input tokens/s, \(format1(result.outputTokensPerSecond)) output tokens/s
                  TTFT: p50 \(milliseconds(result.ttftP50)) ms, p99 \(milliseconds(result.ttftP99)) ms
                  TPOT: p50 \(milliseconds(result.tpotP50)) ms, p99 \(milliseconds(result.tpotP99)) ms
                  preemptions: \(statistics.preemptions)
                """)
            if let json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try orFail(json) { try encoder.encode(result).write(to: URL(filePath: json)) }
            }
        }

        func milliseconds(_ seconds: Double) -> String { format1(seconds * 1000) }
    }
}

/// When one request's tokens arrived, relative to the common start.
struct RequestTiming: Sendable {
    var timeToFirstToken: Double
    /// Mean seconds between output tokens after the first (nil with a single token).
    var timePerOutputToken: Double?
    var tokens: Int

    init(_ stream: AsyncThrowingStream<GenerationEvent, any Error>, start: ContinuousClock.Instant) async throws {
        var first: ContinuousClock.Instant?
        var count = 0
        for try await event in stream {
            if case let .tokens(tokens) = event {
                if first == nil { first = .now }
                count += tokens.count
            }
        }
        let end = ContinuousClock.now
        timeToFirstToken = seconds(from: start, to: first ?? end)
        timePerOutputToken = count > 1 ? seconds(from: first ?? end, to: end) / Double(count - 1) : nil
        tokens = count
    }
}

/// The nearest-rank percentile `p` (0-100) of `sorted` values (0 for none).
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}

/// SplitMix64: random prompts that depend only on the seed.
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Bench.Throughput {
    func validateSynthetic() throws {
        guard let synthetic else { return }
        guard backend.backend == .gpu else { throw ValidationError("--synthetic needs --backend gpu") }
        guard DecodeBenchmarkShapes.config(synthetic) != nil else { throw ValidationError("--synthetic is llama3-8b or llama3-70b") }
    }

    /// The engine on a synthetic model of `name`'s shape on the GPU (weights from a fixed seed).
    func syntheticEngine(_ name: String, kvTokens: Int) throws -> (LLMEngine, String) {
        try orFail("GPU backend") {
            let config = DecodeBenchmarkShapes.config(name)!
            let contextLength = min(config.contextLength, inputLen + outputLen)
            let (runner, device) = try backend.gpuRunner(
                .synthetic(config, quantized: !bf16),
                options: GPURunnerOptions(kvBlockSize: 16, kvBlocks: (kvTokens + 15) / 16, maxStepTokens: stepTokens,
                                          maxStepSequences: maxBatch, contextLength: contextLength))
            let engine = try LLMEngine(
                runner: runner, tokenizer: SyntheticTokenizer(vocabularySize: config.vocabularySize), chatTemplate: .chatML(defaultSystemPrompt: nil),
                configuration: EngineConfiguration(modelName: name, maxWaitingRequests: requests, contextLength: contextLength, endOfTextTokens: []))
            return (engine, "GPU runner on \(device), synthetic \(name) \(bf16 ? "bf16" : "W4AxKV4")")
        }
    }
}

/// The shapes `--synthetic` names.
enum DecodeBenchmarkShapes {
    static func config(_ name: String) -> ModelConfig? {
        switch name {
        case "llama3-8b": .llama3_8B
        case "llama3-70b": .llama3_70B
        default: nil
        }
    }
}

/// A tokenizer for synthetic models: ids have no text (benchmarks submit token ids and ignore the
/// text), so detokenizing costs nothing and never depends on a real vocabulary.
struct SyntheticTokenizer: Tokenizer {
    let vocabularySize: Int
    var bosTokenID: Int32? { nil }
    var eosTokenID: Int32? { nil }
    var addsBOS: Bool { false }
    func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) -> [Int32] { [] }
    func appendBytes(of id: Int32, atStart: Bool, to bytes: inout [UInt8]) {}
    func isControl(_ id: Int32) -> Bool { false }
    func tokenID(for text: String) -> Int32? { nil }
}
