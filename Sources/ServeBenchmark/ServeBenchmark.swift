import CPUReference
import FoundationEssentials
import NIOCore
import NIOHTTP1
import Server
import Synchronization

/// `comet bench serve`: `concurrency` clients send `requests` streaming completions, each a prompt of
/// exactly `inputLength` token ids asking for exactly `outputLength` tokens (`ignore_eos`), to an
/// OpenAI-compatible server, and time them: throughput, time to first token (TTFT) and time per
/// output token after the first (TPOT), as vLLM's serving benchmark defines them.
public struct ServeBenchmark: Sendable {
    public struct Configuration: Sendable {
        /// The server's base URL, e.g. "http://127.0.0.1:8000".
        public var url: String
        public var concurrency: Int
        public var requests: Int
        /// Prompt tokens per request.
        public var inputLength: Int
        /// Generated tokens per request.
        public var outputLength: Int
        public var apiKey: String?
        /// Seed of the prompts' token ids.
        public var seed: UInt64
        /// The longest one request may take.
        public var requestTimeout: Duration

        public init(
            url: String, concurrency: Int, requests: Int, inputLength: Int, outputLength: Int, apiKey: String? = nil,
            seed: UInt64 = 0, requestTimeout: Duration = .seconds(600)
        ) {
            self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
            self.concurrency = concurrency
            self.requests = requests
            self.inputLength = inputLength
            self.outputLength = outputLength
            self.apiKey = apiKey
            self.seed = seed
            self.requestTimeout = requestTimeout
        }
    }

    /// Prompt token ids are drawn from this range, which every LLaMA-family vocabulary covers.
    static let promptTokenRange: Range<UInt64> = 100..<1000

    public let configuration: Configuration

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// Runs the benchmark. Throws only when the server cannot be used at all (a bad URL, no model
    /// list); failed requests are counted in the result with their errors.
    public func run() async throws -> ServeBenchmarkResult {
        let client = try StreamingHTTPClient(baseURL: configuration.url)
        let model = try await servedModel(client)
        let counter = RequestCounter()
        let started = ContinuousClock.now
        let samples = try await withThrowingTaskGroup(of: [RequestSample].self) { group in
            for _ in 0..<min(configuration.concurrency, configuration.requests) {
                group.addTask {
                    var samples: [RequestSample] = []
                    while true {
                        let index = counter.next()
                        guard index < configuration.requests else { return samples }
                        samples.append(await send(index, model: model, client: client))
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        return ServeBenchmarkResult(
            configuration: configuration, model: model, samples: samples, duration: ContinuousClock.now - started)
    }

    /// The model the server serves (`GET /v1/models`).
    private func servedModel(_ client: StreamingHTTPClient) async throws -> String {
        let (status, body) = try await client.collect(
            method: .GET, path: "/v1/models", headers: authorization, timeout: configuration.requestTimeout)
        guard status == .ok else {
            throw ServeBenchmarkError("GET /v1/models answered \(status.code): \(String(buffer: body))")
        }
        let list = try JSONDecoder().decode(ModelList.self, from: Data(buffer: body))
        guard let model = list.data.first?.id else { throw ServeBenchmarkError("the server lists no model") }
        return model
    }

    /// The prompt of request `index`: its own token ids, so that no two requests share a prefix.
    func promptTokens(_ index: Int) -> [Int] {
        var generator = SplitMix64(seed: configuration.seed &+ UInt64(index) &* 0x9E37_79B9)
        let range = Self.promptTokenRange
        return (0..<configuration.inputLength).map { _ in Int(range.lowerBound + generator.next() % UInt64(range.count)) }
    }

    /// Sends request `index` and times it; any failure is recorded in the sample.
    private func send(_ index: Int, model: String, client: StreamingHTTPClient) async -> RequestSample {
        let start = ContinuousClock.now
        var sample = RequestSample()
        do {
            let request = StreamingCompletionRequest(model: model, prompt: promptTokens(index), maxTokens: configuration.outputLength)
            let body = ByteBuffer(bytes: try JSONEncoder().encode(request))
            var status = HTTPResponseStatus.ok
            var errorBody = ""
            var parser = ServerSentEventParser()
            var done = false
            try await client.send(
                method: .POST, path: "/v1/completions", headers: [("Content-Type", "application/json")] + authorization, body: body,
                timeout: configuration.requestTimeout
            ) { status = $0 } onBody: { piece in
                guard status == .ok else {
                    errorBody += String(buffer: piece)
                    return
                }
                for payload in parser.append(piece) {
                    if payload == "[DONE]" {
                        done = true
                    } else if payload.hasPrefix(#"{"error""#) {
                        sample.error = "error event: \(payload)"
                    } else {
                        let chunk = try JSONDecoder().decode(CompletionResponse.self, from: Data(payload.utf8))
                        if sample.firstToken == nil, chunk.choices.contains(where: { !$0.text.isEmpty }) {
                            sample.firstToken = ContinuousClock.now - start
                        }
                        if let usage = chunk.usage {
                            sample.promptTokens = usage.promptTokens
                            sample.outputTokens = usage.completionTokens
                        }
                    }
                }
            }
            sample.latency = ContinuousClock.now - start
            if status != .ok {
                sample.error = "HTTP \(status.code): \(errorBody.prefix(500))"
            } else if sample.error == nil && !done {
                sample.error = "the stream ended without [DONE] (left: \(parser.remainder.prefix(200)))"
            } else if sample.error == nil && sample.outputTokens == nil {
                sample.error = "no usage chunk"
            }
        } catch {
            sample.error = "\(error)"
        }
        return sample
    }

    private var authorization: [(String, String)] {
        configuration.apiKey.map { [("Authorization", "Bearer \($0)")] } ?? []
    }
}

/// The body the benchmark sends: greedy, a fixed output length, usage in the last chunk.
private struct StreamingCompletionRequest: Encodable {
    var model: String
    var prompt: [Int]
    var maxTokens: Int
    var temperature = 0.0
    var stream = true
    var streamOptions = ["include_usage": true]
    /// comet (and vLLM) keep generating through end-of-text, so every request has its length.
    var ignoreEOS = true

    enum CodingKeys: String, CodingKey {
        case model, prompt, temperature, stream
        case maxTokens = "max_tokens"
        case streamOptions = "stream_options"
        case ignoreEOS = "ignore_eos"
    }
}

/// What one request measured.
struct RequestSample: Sendable {
    var firstToken: Duration?
    var latency: Duration?
    var promptTokens: Int?
    var outputTokens: Int?
    var error: String?

    /// (latency - TTFT) / (output tokens - 1), for requests with two tokens or more.
    var timePerOutputToken: Duration? {
        guard let firstToken, let latency, let outputTokens, outputTokens > 1 else { return nil }
        return (latency - firstToken) / (outputTokens - 1)
    }
}

/// Hands out request indices 0, 1, 2, ... to the clients.
private final class RequestCounter: Sendable {
    private let value = Atomic(0)
    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue }
}

public struct ServeBenchmarkError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
