import ArgumentParser
import Engine
import Model
import Sampling

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt on the CPU, streaming it; tokens/s go to stderr.",
        discussion: "Special tokens written in the prompt (e.g. <|im_start|>) are recognized. With --chat the prompt is a user message put into the model's chat template. Runs through the serving engine (the CPU runner).")

    @Argument(help: "The prompt.")
    var prompt: String

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var backend: BackendOptions

    @Option(help: "The most tokens to generate.")
    var maxTokens = 256

    @Flag(help: "Treat the prompt as a user message and apply the model's chat template.")
    var chat = false

    @Option(help: "System message (with --chat; default: the template's own, if any).")
    var system: String?

    @Option(help: "KV cache length: prompt plus generated tokens.")
    var ctx = 2048

    func validate() throws {
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        if ctx < 2 { throw ValidationError("--ctx must be at least 2") }
        if system != nil && !chat { throw ValidationError("--system needs --chat") }
    }

    func run() async throws {
        let (source, checkpoint) = try backend.open(modelOptions)
        let tokenizer = try modelOptions.tokenizer(source)
        var stopTokens = Set([tokenizer.eosTokenID].compactMap { $0 })
        let ids: [Int32]
        if chat {
            let template = try modelOptions.chatTemplate(source)
            var messages = system.map { [ChatMessage(role: .system, content: $0)] } ?? []
            messages.append(ChatMessage(role: .user, content: prompt))
            ids = try orFail("") { try template.encode(messages, tokenizer: tokenizer) }
            if let end = tokenizer.tokenID(for: template.endOfTurn) { stopTokens.insert(end) }
        } else {
            ids = tokenizer.encode(prompt, addBOS: tokenizer.addsBOS, parseSpecial: true)
        }
        guard !ids.isEmpty else { throw fail("the prompt is empty") }

        let (engine, description) = try backend.engine(
            modelOptions, source: source, checkpoint: checkpoint, tokenizer: tokenizer, contextLength: ctx, maxBatch: 1, stepTokens: 128)
        let request = GenerationRequest(id: "generate", prompt: ids, sampling: sampling.parameters, maxTokens: maxTokens, stopTokens: stopTokens)
        let completion: StreamedCompletion
        do {
            completion = try await StreamedCompletion(request, on: engine)
        } catch {
            await engine.shutdown()
            throw fail("\(error)")
        }
        await engine.shutdown()
        writeOut("\n")
        var stderr = StandardError()
        print(completion.summary + " (\(description))", to: &stderr)
    }
}
