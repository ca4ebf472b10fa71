import ArgumentParser
import Engine
import Logging
import Server

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over an OpenAI-compatible HTTP API (completions, chat completions, SSE streaming).",
        discussion: """
            Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics \
            (Prometheus). SIGINT or SIGTERM stops accepting connections, lets running requests finish for up to \
            --shutdown-grace seconds, cancels the rest, stops the engine and exits 0.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var backend: BackendOptions

    @Option(help: "Positions per sequence (prompt + generated); at most the model's context.")
    var ctx = 2048

    @Option(help: "The most sequences in one engine step.")
    var maxBatch = 32

    @Option(help: "The most tokens in one engine step (prompt chunks and decode tokens together).")
    var stepTokens = 512

    @Option(help: "KV cache positions over all sequences (default: CPU 8 sequences' worth; GPU: --gpu-memory of free memory).")
    var kvTokens: Int?

    @Option(help: "Address to listen on (0.0.0.0 for every interface).")
    var host = "127.0.0.1"

    @Option(help: "TCP port to listen on.")
    var port = 8000

    @Option(help: "Require 'Authorization: Bearer KEY' on every /v1 route (/health and /metrics stay open).")
    var apiKey: String?

    @Option(help: "Larger request bodies are refused with 413.")
    var maxBodyBytes = APIServerConfiguration.defaultMaxBodyBytes

    @Option(help: "Requests that may wait for the engine; more are refused with 429.")
    var maxWaiting = 256

    @Option(help: "Seconds that running requests get to finish after SIGINT/SIGTERM before they are cancelled.")
    var shutdownGrace = 30

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
        guard maxWaiting >= 1 else { throw ValidationError("--max-waiting must be at least 1") }
        guard ctx >= 2, maxBatch >= 1, stepTokens >= 1 else { throw ValidationError("--ctx must be at least 2, --max-batch and --step-tokens at least 1") }
        if let kvTokens, kvTokens < 1 { throw ValidationError("--kv-tokens must be at least 1") }
        guard shutdownGrace >= 0 else { throw ValidationError("--shutdown-grace must be at least 0 seconds") }
        if let apiKey, apiKey.isEmpty { throw ValidationError("--api-key must not be empty") }
    }

    var serverConfiguration: APIServerConfiguration {
        APIServerConfiguration(
            host: host, port: port, apiKey: apiKey, maxBodyBytes: maxBodyBytes, shutdownGracePeriod: .seconds(shutdownGrace))
    }

    func run() async throws {
        let (source, checkpoint) = try backend.open(modelOptions)
        let tokenizer = try modelOptions.tokenizer(source)
        let contextLength = min(ctx, source.config.contextLength)
        let (engine, description) = try backend.engine(
            modelOptions, source: source, checkpoint: checkpoint, tokenizer: tokenizer, contextLength: contextLength,
            kvTokens: kvTokens ?? (backend.backend == .cpu ? 8 * contextLength : nil), maxBatch: maxBatch,
            stepTokens: max(stepTokens, maxBatch), maxWaiting: maxWaiting)
        var logger = Logger(label: "comet.serve")
        logger.logLevel = .info
        let server = APIServer(engine: engine, configuration: serverConfiguration, logger: logger)
        let model = engine.modelName
        let host = host
        do {
            try await server.run { port in
                var stderr = StandardError()
                print("comet serve: \(model) at http://\(host):\(port)/v1 on the \(description) (Ctrl-C stops)", to: &stderr)
            }
        } catch {
            throw fail("serve: \(error)")
        }
    }
}
