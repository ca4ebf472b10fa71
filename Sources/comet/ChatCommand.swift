import ArgumentParser
import Engine
import Model
import Sampling

#if canImport(Glibc)
import Glibc
#endif

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with the model on the CPU: one message per line on stdin, replies on stdout.",
        discussion: "Keeps the conversation in the model's chat template; the engine's prefix cache keeps earlier turns' KV blocks, so each reply runs only the new tokens (in whole blocks). Commands: /reset forgets the conversation, /exit (or end of input) quits. Works with piped input too: each line is one user message.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var backend: BackendOptions

    @Option(help: "The most tokens of one reply.")
    var maxTokens = 512

    @Option(help: "System message (default: the template's own, if any).")
    var system: String?

    @Option(help: "KV cache length; the oldest turns are dropped when the conversation outgrows it.")
    var ctx = 2048

    @Flag(help: "Print tokens/s after each reply (on stderr).")
    var stats = false

    func validate() throws {
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        if ctx < 16 { throw ValidationError("--ctx must be at least 16") }
    }

    func run() async throws {
        let (source, checkpoint) = try backend.open(modelOptions)
        let tokenizer = try modelOptions.tokenizer(source)
        let template = try modelOptions.chatTemplate(source)
        var stopTokens = Set([tokenizer.eosTokenID].compactMap { $0 })
        if let end = tokenizer.tokenID(for: template.endOfTurn) { stopTokens.insert(end) }
        let (engine, _) = try backend.engine(
            modelOptions, source: source, checkpoint: checkpoint, tokenizer: tokenizer, contextLength: ctx, maxBatch: 1, stepTokens: 128)
        let contextLength = engine.contextLength
        // Each reply samples with its own seed: the given one, then one more per reply (reproducible with --seed).
        var parameters = sampling.parameters
        let interactive = isatty(0) == 1
        var stderr = StandardError()
        if interactive { print("Chatting with \(modelOptions.path). /reset forgets, /exit quits.", to: &stderr) }

        var history: [ChatMessage] = []
        while true {
            if interactive { writeOut("> ") }
            guard let line = readLine(strippingNewline: true) else { break }
            let message = line.trimmingWhitespace()
            if message.isEmpty { continue }
            if message == "/exit" || message == "/quit" { break }
            if message == "/reset" { history.removeAll(); continue }

            history.append(ChatMessage(role: .user, content: message))
            // Drop the oldest exchanges until the prompt leaves room for a reply.
            var prompt: [Int32] = []
            while true {
                var messages = system.map { [ChatMessage(role: .system, content: $0)] } ?? []
                messages += history
                prompt = try orFail("") { try template.encode(messages, tokenizer: tokenizer) }
                if prompt.count + min(maxTokens, 64) <= contextLength || history.count <= 1 { break }
                history.removeFirst(min(2, history.count - 1))
            }
            guard prompt.count < contextLength else {
                print("error: that message is too long for the context (\(prompt.count) tokens, --ctx \(contextLength))", to: &stderr)
                history.removeLast()
                continue
            }
            let request = GenerationRequest(id: "chat", prompt: prompt, sampling: parameters, maxTokens: maxTokens, stopTokens: stopTokens)
            parameters.seed &+= 1
            let reply: StreamedCompletion
            do {
                reply = try await StreamedCompletion(request, on: engine)
            } catch {
                await engine.shutdown()
                throw fail("\(error)")
            }
            writeOut(interactive ? "\n" : "\n\n")
            history.append(ChatMessage(role: .assistant, content: tokenizer.decode(reply.tokens)))
            if stats { print(reply.summary, to: &stderr) }
        }
        await engine.shutdown()
    }
}

extension String {
    /// Without leading and trailing whitespace (and newlines).
    func trimmingWhitespace() -> String {
        var scalars = unicodeScalars[...]
        while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}
