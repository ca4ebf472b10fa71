import ArgumentParser
import Engine
import Logging
import Server

/// What `makeEngine` needs to build the serving engine, from `comet serve`'s flags.
struct EngineOptions {
    /// `--model` and `--threads` (`model.open()` opens the GGUF file or Hugging Face folder).
    var model: ModelOptions
    /// Requests that may wait for the engine; past that it refuses with `EngineError.overloaded` (HTTP 429).
    var maxWaiting: Int
}

/// The engine `comet serve` runs.
///
/// INTEGRATION: this is the one function to replace when the engine branch lands: build and return
/// `LLMEngine(...)` from `options` here. Until then `comet serve` stops with this clear error.
func makeEngine(_ options: EngineOptions) throws -> any GenerationEngine {
    throw fail("the serving engine is not available yet: `comet serve` needs LLMEngine, which lands with the engine branch")
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over an OpenAI-compatible HTTP API (completions, chat completions, SSE streaming).",
        discussion: """
            Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics \
            (Prometheus). SIGINT or SIGTERM stops accepting connections, lets running requests finish for up to \
            --shutdown-grace seconds, cancels the rest, stops the engine and exits 0.
            """)

    @OptionGroup var modelOptions: ModelOptions

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
        guard maxWaiting >= 0 else { throw ValidationError("--max-waiting must be at least 0") }
        guard shutdownGrace >= 0 else { throw ValidationError("--shutdown-grace must be at least 0 seconds") }
        if let apiKey, apiKey.isEmpty { throw ValidationError("--api-key must not be empty") }
    }

    var serverConfiguration: APIServerConfiguration {
        APIServerConfiguration(
            host: host, port: port, apiKey: apiKey, maxBodyBytes: maxBodyBytes, shutdownGracePeriod: .seconds(shutdownGrace))
    }

    func run() async throws {
        let engine = try orFail("") { try makeEngine(EngineOptions(model: modelOptions, maxWaiting: maxWaiting)) }
        var logger = Logger(label: "comet.serve")
        logger.logLevel = .info
        let server = APIServer(engine: engine, configuration: serverConfiguration, logger: logger)
        let model = engine.modelName
        let host = host
        do {
            try await server.run { port in
                var stderr = StandardError()
                print("comet serve: \(model) at http://\(host):\(port)/v1 (Ctrl-C stops)", to: &stderr)
            }
        } catch {
            throw fail("serve: \(error)")
        }
    }
}
