import ArgumentParser
import CPUBackend
import Engine
import FMPQModel
import Model
import Quant

#if canImport(Glibc)
import Glibc
#endif

/// `--model` and `--threads`, shared by every command that reads a model; loading is done here so that
/// every command reports a missing or bad model file the same way: one error line, exit status 1.
struct ModelOptions: ParsableArguments {
    @Option(help: "GGUF model file, or Hugging Face model folder (config.json + safetensors + tokenizer.json) (default: the SmolLM2-135M-Instruct that `comet pull` fetches).")
    var model: String?

    @Option(help: "CPU threads for the forward pass (default: all cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    var path: String { model ?? DefaultModel.path() }

    /// The model file or folder, opened (`openModel` picks by what the path is), or exit 1 with a
    /// message that says what to do.
    func open() throws -> ModelSource {
        guard access(path, F_OK) == 0 else {
            if model == nil {
                throw fail("the default model is not downloaded yet (\(path)); run `comet pull` first, or pass --model FILE")
            }
            throw fail("model file or folder not found: \(path)")
        }
        return try orFail("\(path)") { try openModel(path) }
    }

    /// The model, which must be a GGUF file: quantized checkpoints name their base model file by
    /// its SHA-256, so `command` refuses a Hugging Face folder with one clear line.
    func openGGUF(for command: String) throws -> ModelSource {
        let source = try open()
        guard case .gguf = source.format else {
            throw fail("\(command) needs a GGUF base model (a checkpoint names its base file by SHA-256); \(path) is a Hugging Face folder")
        }
        return source
    }

    func tokenizer(_ source: ModelSource) throws -> any Tokenizer {
        try orFail("\(path)") { try source.tokenizer() }
    }

    func chatTemplate(_ source: ModelSource) throws -> ChatTemplate {
        try orFail("\(path)") { try source.chatTemplate() }
    }

    /// The model loaded for the CPU backend (weights converted to fp32); `maxBatchTokens` rows run
    /// through the weights together.
    func cpuModel(_ source: ModelSource, maxBatchTokens: Int = 128) throws -> LlamaCPUModel {
        try orFail("\(path)") { try LlamaCPUModel(weights: source.weights, threads: threads, maxBatchTokens: maxBatchTokens) }
    }

    /// The serving engine on the CPU runner: sequences of up to `contextLength` positions (at most the
    /// model's), a KV cache of `kvTokens` positions (nil: one sequence's worth) in blocks of 16, steps
    /// of at most `stepTokens` tokens and `maxBatch` sequences. Also returns the model's thread count.
    func cpuEngine(
        _ source: ModelSource, tokenizer: any Tokenizer, contextLength: Int, kvTokens: Int? = nil, maxBatch: Int,
        stepTokens: Int, maxWaiting: Int = 1024, checkpoint: QuantizedCheckpoint? = nil
    ) throws -> (engine: LLMEngine, threads: Int) {
        let model = try cpuModel(source, maxBatchTokens: stepTokens)
        if let checkpoint {
            // The checkpoint's exact integer reference: W4Ax linears and KV4 as the checkpoint says.
            try orFail("\(path)") {
                try QuantizedModelHooks.install(on: model, checkpoint: checkpoint,
                                                evaluation: QuantizedEvaluation(checkpoint))
            }
        }
        let contextLength = min(contextLength, model.config.contextLength)
        // A model file without a recognizable chat template can still generate plain text.
        let template = (try? source.chatTemplate()) ?? .chatML(defaultSystemPrompt: nil)
        return try orFail("") {
            let runner = try CPUModelRunner(model: model, kvBlockCount: CPUModelRunner.blocks(forTokens: kvTokens ?? contextLength),
                                            maxStepTokens: stepTokens, maxStepSequences: maxBatch)
            let engine = try LLMEngine(runner: runner, tokenizer: tokenizer, chatTemplate: template, configuration: EngineConfiguration(
                modelName: path, maxWaitingRequests: maxWaiting, contextLength: contextLength))
            return (engine, model.threads)
        }
    }
}

/// `body`'s value, or exit 1 with its error printed after `context`.
@discardableResult
func orFail<T>(_ context: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        throw fail(context.isEmpty ? "\(error)" : "\(context): \(error)")
    }
}

/// Writes `text` to stdout at once (streamed tokens must not wait in a buffer).
func writeOut(_ text: String) {
    guard !text.isEmpty else { return }
    print(text, terminator: "")
    fflush(nil)
}

/// Seconds elapsed since `start`.
func seconds(since start: ContinuousClock.Instant) -> Double {
    seconds(from: start, to: .now)
}

/// Seconds from `start` to `end`.
func seconds(from start: ContinuousClock.Instant, to end: ContinuousClock.Instant) -> Double {
    let elapsed = end - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
}
