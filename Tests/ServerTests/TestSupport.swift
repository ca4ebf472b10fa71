import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing
@testable import Server

/// The server over `engine`, driven in-process (no socket) through `body`.
func withRouterClient(
    _ engine: FakeEngine = FakeEngine(), configuration: APIServerConfiguration = APIServerConfiguration(),
    _ body: @Sendable (any TestClientProtocol) async throws -> Void
) async throws {
    let server = APIServer(engine: engine, configuration: configuration, logger: quietLogger)
    try await onServerTestThreads {
        try await Application(router: server.makeRouter(), logger: quietLogger).test(.router, body)
    }
}

/// The server over `engine` on a real loopback port; `body` gets the base URL ("http://localhost:PORT").
func withLiveServer(
    _ engine: FakeEngine, configuration: APIServerConfiguration = APIServerConfiguration(),
    _ body: @Sendable (String) async throws -> Void
) async throws {
    let server = APIServer(engine: engine, configuration: configuration, logger: quietLogger)
    try await onServerTestThreads {
        try await server.makeApplication().test(.live) { client in
            try await body("http://localhost:\(try #require(client.port))")
        }
    }
}

// The tests run on threads of their own (TestExecutor.swift), yet a little still needs the
// cooperative pool (Hummingbird starts its graceful shutdown in an unstructured task), which
// CPU-heavy tests elsewhere in `swift test` can hold for minutes: limits and timeouts are generous.
let quietLogger: Logger = {
    var logger = Logger(label: "comet.serve.tests")
    logger.logLevel = .warning
    return logger
}()

extension TestClientProtocol {
    /// POSTs `json` (written out literally in the tests, so that they show the wire format) to `uri`.
    func post(_ uri: String, json: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .post, headers: headers.merging([.contentType: "application/json"]), body: ByteBuffer(string: json))
    }

    func get(_ uri: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .get, headers: headers)
    }
}

extension HTTPFields {
    func merging(_ other: HTTPFields) -> HTTPFields {
        var merged = self
        for field in other where merged[field.name] == nil { merged.append(field) }
        return merged
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    /// The body as a JSON object (JSONSerialization keeps explicit nulls, which the tests check).
    func jsonObject() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any], "not a JSON object: \(text)")
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(buffer: body))
    }

    /// The OpenAI error object of an error response.
    func error() throws -> (message: String, type: String, param: String?, code: String?) {
        let object = try jsonObject()
        let error = try #require(object["error"] as? [String: Any], "no error object in \(text)")
        #expect(Set(error.keys) == ["message", "type", "param", "code"], "\(text)")
        return (
            try #require(error["message"] as? String), try #require(error["type"] as? String),
            error["param"] as? String, error["code"] as? String
        )
    }
}

/// The `data:` payloads of a server-sent event body, in order; checks the framing on the way.
func serverSentEvents(_ body: String) throws -> [String] {
    #expect(body.hasSuffix("\n\n"), "an SSE body ends with a blank line: \(body.suffix(40).debugDescription)")
    return try body.split(separator: "\n\n", omittingEmptySubsequences: true).map { event in
        try #require(event.hasPrefix("data: ") && !event.contains("\n"), "not an OpenAI SSE event: \(event.debugDescription)")
        return String(event.dropFirst("data: ".count))
    }
}

/// `payload` (one SSE data payload) as a JSON object.
func jsonObject(_ payload: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any], "not a JSON object: \(payload)")
}

/// Polls `condition` every 10 ms, `polls` times at most; returns whether it held. Counting polls
/// rather than watching the clock keeps a starved test (see the note above `quietLogger`) from
/// giving up before the code under test has run at all.
func eventually(polls: Int = 3000, _ condition: () -> Bool) async -> Bool {
    for _ in 0..<polls {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// One streaming POST over a real connection, read chunk by chunk.
struct StreamingCall {
    let client: HTTPClient
    let url: String

    /// Sends `json` and returns the status and the body's chunks as they arrive.
    func start(_ json: String, headers: [(String, String)] = []) async throws -> (status: UInt, body: HTTPClientResponse.Body) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(string: json))
        let response = try await client.execute(request, timeout: .seconds(300))
        return (response.status.code, response.body)
    }

    /// Sends `json` and reads the whole body.
    func text(_ json: String) async throws -> (status: UInt, body: String) {
        let (status, body) = try await start(json)
        var collected = ByteBuffer()
        for try await var chunk in body { collected.writeBuffer(&chunk) }
        return (status, String(buffer: collected))
    }
}

/// An HTTP client that opens as many connections as `connections` concurrent requests need.
/// AsyncHTTPClient retries a refused connection until `connectTimeout` has passed.
func makeHTTPClient(connections: Int = 8, connectTimeout: Duration = .seconds(10)) -> HTTPClient {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
    configuration.timeout.connect = .nanoseconds(Int64(connectTimeout / .nanoseconds(1)))
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}

/// Runs `body` with an HTTP client (see `makeHTTPClient`) and shuts the client down after it,
/// whether `body` throws or not.
@discardableResult
func withHTTPClient<T: Sendable>(
    connections: Int = 8, connectTimeout: Duration = .seconds(10), _ body: (HTTPClient) async throws -> T
) async throws -> T {
    let client = makeHTTPClient(connections: connections, connectTimeout: connectTimeout)
    do {
        let value = try await body(client)
        try await client.shutdown()
        return value
    } catch {
        try? await client.shutdown()
        throw error
    }
}
