import ArgumentParser
import CPUBackend
import CUDA
import Engine
import FMPQModel
import GPUBackend
import Model
import Quant

/// Where the serving engine runs, shared by generate, chat, serve and bench throughput.
///
/// `--backend gpu` runs an FMPQ checkpoint folder (`comet quantize`) as W4AxKV4, and a GGUF file or
/// Hugging Face folder unquantized in bf16. `--backend cpu` (the default) runs any of them on the
/// CPU backend (fp32; a checkpoint through its exact integer reference).
struct BackendOptions: ParsableArguments {
    enum Backend: String, ExpressibleByArgument, CaseIterable { case cpu, gpu }

    @Option(help: "Where the model runs: cpu or gpu.")
    var backend: Backend = .cpu

    @Option(help: "GPU: the share of free GPU memory the KV cache may take.")
    var gpuMemory = 0.9

    @Option(help: "GPU: run the model over this many GPUs (tensor parallelism over NCCL, GPUs --device onwards). An FMPQ checkpoint must be quantized with the same or a multiple of it.")
    var tensorParallel = 1

    @Flag(inversion: .prefixedEnableDisable,
          help: "GPU: prefill attention in query tiles (several prompt tokens per CTA share each KV4 page read).")
    var prefillQueryTiles = GPURunnerOptions.defaultPrefillQueryTiles

    @OptionGroup var gpu: GPUOptions

    func validate() throws {
        guard gpuMemory > 0, gpuMemory <= 0.98 else { throw ValidationError("--gpu-memory must be in (0, 0.98]") }
        guard tensorParallel >= 1, tensorParallel <= 64 else { throw ValidationError("--tensor-parallel must be from 1 to 64") }
        guard tensorParallel == 1 || backend == .gpu else { throw ValidationError("--tensor-parallel needs --backend gpu") }
    }

    /// The GPU runner for `plan` with these options (and this command line's runner flags).
    func gpuRunner(_ plan: GPUWeightsPlan, options: GPURunnerOptions) throws -> (runner: any GPURunner, device: String) {
        let libraries = try gpu.makeLibraries(count: tensorParallel)
        var options = options
        options.prefillQueryTiles = prefillQueryTiles
        let runner = try plan.runner(libraries: libraries, search: gpu.librarySearch, options: options)
        let name = libraries[0].context.device.name
        return (runner, tensorParallel == 1 ? name : "\(tensorParallel) x \(name) (tensor parallel)")
    }

    /// The model to serve: its file or folder (the tokenizer and chat template come from it, or
    /// from a checkpoint's base model file), and the checkpoint when the path is one.
    func open(_ model: ModelOptions) throws -> (source: ModelSource, checkpoint: QuantizedCheckpoint?) {
        if let checkpoint = try loadCheckpointIfFolder(model.path) {
            let source = try orFail("\(model.path)") { try ModelSource(gguf: BaseModelFile.open(for: checkpoint)) }
            return (source, checkpoint)
        }
        return (try model.open(), nil)
    }

    /// The engine on the chosen backend, and a one-line description of it for summaries.
    func engine(
        _ model: ModelOptions, source: ModelSource, checkpoint: QuantizedCheckpoint?, tokenizer: any Tokenizer, contextLength: Int,
        kvTokens: Int? = nil, maxBatch: Int, stepTokens: Int, maxWaiting: Int = 1024
    ) throws -> (engine: LLMEngine, description: String) {
        switch backend {
        case .cpu:
            if let checkpoint {
                let (engine, threads) = try model.cpuEngine(
                    source, tokenizer: tokenizer, contextLength: contextLength, kvTokens: kvTokens, maxBatch: maxBatch,
                    stepTokens: stepTokens, maxWaiting: maxWaiting, checkpoint: checkpoint)
                return (engine, "CPU runner, FMPQ checkpoint, \(threads) threads")
            }
            let (engine, threads) = try model.cpuEngine(
                source, tokenizer: tokenizer, contextLength: contextLength, kvTokens: kvTokens, maxBatch: maxBatch,
                stepTokens: stepTokens, maxWaiting: maxWaiting)
            return (engine, "CPU runner, \(threads) threads")
        case .gpu:
            return try orFail("GPU backend") {
                let plan: GPUWeightsPlan = checkpoint.map { .checkpoint($0, base: source.weights) } ?? .bf16(source.weights)
                let contextLength = min(contextLength, source.config.contextLength)
                let (runner, device) = try gpuRunner(plan, options: GPURunnerOptions(
                    kvBlockSize: 16, kvBlocks: kvTokens.map { ($0 + 15) / 16 }, memoryFraction: gpuMemory,
                    maxStepTokens: stepTokens, maxStepSequences: maxBatch, contextLength: contextLength))
                let template = (try? source.chatTemplate()) ?? .chatML(defaultSystemPrompt: nil)
                let engine = try LLMEngine(runner: runner, tokenizer: tokenizer, chatTemplate: template, configuration: EngineConfiguration(
                    modelName: model.path, maxWaitingRequests: maxWaiting, contextLength: contextLength))
                let kind = checkpoint != nil ? "W4AxKV4 (FMPQ checkpoint)" : "bf16"
                return (engine, "GPU runner on \(device), \(kind), \(runner.kvBlockCount) KV blocks of 16")
            }
        }
    }
}
