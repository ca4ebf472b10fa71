import ArgumentParser
import CPUBackend
import FMPQModel
import Model
import Quant

#if canImport(Glibc)
import Glibc
#endif

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model.",
        subcommands: [Perplexity.self, AccuracyTable.self])

    struct Perplexity: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ppl",
            abstract: "Perplexity of a model or an FMPQ checkpoint on a text file (CPU), with a sliding window.",
            discussion: "--model may be a GGUF file (fp32) or a checkpoint folder of `comet quantize` (W4Ax linears, KV4 as the checkpoint says; loading checks it). Windows of --ctx tokens start every --stride tokens; each scores the tokens no earlier window scored. No BOS is added. Progress goes to stderr, the result to stdout.")

        @OptionGroup var modelOptions: ModelOptions

        @Option(help: "UTF-8 text file to score.")
        var text: String

        @Option(help: "Window length in tokens.")
        var ctx = 512

        @Option(help: "Step between window starts (at most --ctx).")
        var stride = 512

        @Option(help: "Score only the first N tokens of the text (0: all).")
        var maxTokens = 0

        @Option(help: "Checkpoints only: fmpq (A4/A8 blocks, default) or a16 (weight-only).")
        var activations: QuantizedLinear.Activations = .fmpq

        @Flag(inversion: .prefixedNo, help: "Checkpoints only: KV4 cache (default: as the checkpoint says).")
        var kv4: Bool?

        func validate() throws {
            if ctx < 2 { throw ValidationError("--ctx must be at least 2") }
            if stride < 1 || stride > ctx { throw ValidationError("--stride must be between 1 and --ctx (\(ctx))") }
            if maxTokens < 0 { throw ValidationError("--max-tokens must be >= 0") }
        }

        func run() throws {
            let bytes = try orFail("") { try readFile(text) }
            guard let content = String(validating: bytes, as: UTF8.self) else { throw fail("\(text) is not UTF-8 text") }
            let checkpoint = try loadCheckpointIfFolder(modelOptions.path)
            let source = try checkpoint.map { c in try orFail("") { try ModelSource(gguf: BaseModelFile.open(for: c)) } }
                ?? modelOptions.open()
            let tokenizer = try modelOptions.tokenizer(source)
            var tokens = tokenizer.encode(content, addBOS: false, parseSpecial: false)
            if maxTokens > 0, tokens.count > maxTokens { tokens.removeSubrange(maxTokens...) }
            guard tokens.count >= 2 else { throw fail("\(text) has \(tokens.count) tokens; perplexity needs at least 2") }
            let model = try modelOptions.cpuModel(source)
            if let checkpoint {
                var evaluation = QuantizedEvaluation(checkpoint, activations: activations)
                if let kv4 { evaluation.kv4 = kv4 }
                try orFail("\(modelOptions.path)") { try QuantizedModelHooks.install(on: model, checkpoint: checkpoint, evaluation: evaluation) }
                var stderr = StandardError()
                print("checkpoint \(modelOptions.path): activations \(evaluation.activations.rawValue), KV \(evaluation.kv4 ? (evaluation.keyRotation ? "KV4, keys rotated" : "KV4") : "fp32")", to: &stderr)
            }
            guard ctx <= model.config.contextLength else {
                throw fail("--ctx \(ctx) is longer than the model's context (\(model.config.contextLength))")
            }

            let evaluator = try orFail("") { try PerplexityEvaluator(model: model, context: ctx, stride: stride) }
            let start = ContinuousClock.now
            let interactive = isatty(2) == 1
            var stderr = StandardError()
            let result = try orFail("") {
                try evaluator.evaluate(tokens) { p in
                    let elapsed = seconds(since: start)
                    let line = "window \(p.window)/\(p.windowCount), \(p.scoredTokens) tokens, perplexity \(format2(p.perplexity)), "
                        + "\(format1(elapsed)) s, \(format1(Double(p.scoredTokens) / elapsed)) tokens/s"
                    // A live line on a terminal; otherwise about twenty lines in all.
                    if interactive {
                        print("\r" + line, terminator: p.window == p.windowCount ? "\n" : "", to: &stderr)
                    } else if p.window == p.windowCount || p.window % max(1, p.windowCount / 20) == 0 {
                        print(line, to: &stderr)
                    }
                }
            }
            let elapsed = seconds(since: start)
            print("perplexity \(formatFixed(result.perplexity, digits: 3)) over \(result.scoredTokens) scored tokens "
                + "(\(tokens.count) tokens of \(text), \(result.windowCount) windows, ctx \(ctx), stride \(stride)) "
                + "in \(format1(elapsed)) s (\(model.threads) threads)")
        }
    }
}

/// The checkpoint at `path` when it is a folder (loaded and checked), nil for a model file.
func loadCheckpointIfFolder(_ path: String) throws -> QuantizedCheckpoint? {
    // A folder with a manifest is a checkpoint; one without may be a Hugging Face model folder.
    guard access(path + "/manifest.json", F_OK) == 0 else { return nil }
    return try orFail("") { try QuantizedCheckpoint.load(from: path) }
}

/// The whole file at `path`.
func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileError("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { throw FileError("cannot read \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { return bytes }
        bytes.append(contentsOf: chunk[..<n])
    }
}

/// A file that could not be read or written; the message says which and why.
struct FileError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
