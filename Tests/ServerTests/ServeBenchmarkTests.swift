import Engine
import Foundation
import NIOCore
import Testing
@testable import ServeBenchmark
@testable import Server

/// `comet bench serve` and its library against the live server with the fake engine.
@Suite(.timeLimit(.minutes(30))) struct ServeBenchmarkTests {
    @Test func measuresEveryRequestOfAFixedShape() async throws {
        let engine = FakeEngine(contextLength: 512, behavior: .init(tokenDelay: .milliseconds(5)))
        try await withLiveServer(engine) { url in
            let result = try await ServeBenchmark(.init(url: url, concurrency: 4, requests: 12, inputLength: 20, outputLength: 8)).run()
            #expect(result.model == "fake-model")
            #expect(result.succeeded == 12 && result.failed == 0, "\(result.errors)")
            #expect(result.inputTokens == 12 * 20 && result.outputTokens == 12 * 8)
            let ttft = try #require(result.timeToFirstTokenMilliseconds)
            let tpot = try #require(result.timePerOutputTokenMilliseconds)
            #expect(ttft.p50 > 0 && ttft.p50 <= ttft.p99)
            #expect(tpot.p50 >= 4, "the fake engine waits 5 ms between tokens: \(tpot)")
            #expect(result.outputThroughput > 0 && result.requestThroughput > 0)
            #expect(result.table.contains("12 (0 failed)") && result.table.contains("TPOT ms"))
        }
        let requests = engine.requests
        #expect(requests.count == 12)
        #expect(requests.allSatisfy { $0.prompt.count == 20 && $0.maxTokens == 8 && $0.ignoreEndOfText && $0.sampling.temperature == 0 })
        #expect(Set(requests.map(\.prompt)).count == 12, "every request has its own prompt")
    }

    @Test func failuresAreCountedWithTheirErrors() async throws {
        let engine = FakeEngine(behavior: .init(failAfterTokens: 2))
        try await withLiveServer(engine) { url in
            let result = try await ServeBenchmark(.init(url: url, concurrency: 2, requests: 4, inputLength: 4, outputLength: 8)).run()
            #expect(result.succeeded == 0 && result.failed == 4)
            #expect(result.errors.first?.contains("injected failure") == true, "\(result.errors)")
        }
    }

    @Test func sendsTheAPIKey() async throws {
        try await withLiveServer(FakeEngine(), configuration: APIServerConfiguration(apiKey: "k")) { url in
            let good = try await ServeBenchmark(.init(url: url, concurrency: 1, requests: 2, inputLength: 3, outputLength: 2, apiKey: "k")).run()
            #expect(good.succeeded == 2)
            await #expect(throws: ServeBenchmarkError.self) {
                _ = try await ServeBenchmark(.init(url: url, concurrency: 1, requests: 1, inputLength: 3, outputLength: 2)).run()
            }
        }
    }

    @Test func theCommandReportsAndWritesJSON() async throws {
        let engine = FakeEngine()
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("bench-serve-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: json) }
        try await withLiveServer(engine) { url in
            let (status, output) = try await runComet([
                "bench", "serve", "--url", url, "--concurrency", "3", "--requests", "6", "--input-len", "16",
                "--output-len", "4", "--json", json.path,
            ])
            #expect(status == 0, "\(output)")
            #expect(output.contains("6 (0 failed)") && output.contains("TTFT ms") && output.contains("output tokens/s"), "\(output)")
        }
        let result = try JSONDecoder().decode(ServeBenchmarkResult.self, from: Data(contentsOf: json))
        #expect(result.succeeded == 6 && result.outputTokens == 24 && result.inputTokens == 96)
        #expect(engine.requests.count == 6)
    }

    @Test func theCommandExitsOneWhenRequestsFail() async throws {
        try await withLiveServer(FakeEngine(behavior: .init(maxRunning: 0))) { url in
            let (status, output) = try await runComet(["bench", "serve", "--url", url, "--requests", "2", "--input-len", "4", "--output-len", "2"])
            #expect(status == 1)
            #expect(output.contains("0 (2 failed)") && output.contains("HTTP 429"), "\(output)")
        }
    }

    @Test func percentilesInterpolateBetweenRanks() throws {
        let d = try #require(ServeBenchmarkResult.Distribution([4, 1, 3, 2]))
        #expect(d.mean == 2.5)
        #expect(d.p50 == 2.5)
        #expect(abs(d.p99 - 3.97) < 1e-12)
        #expect(ServeBenchmarkResult.Distribution([]) == nil)
    }

    @Test func eventsSplitAcrossPiecesAreReassembled() {
        var parser = ServerSentEventParser()
        let stream = "data: {\"a\":1}\n\n: comment\ndata: [DONE]\n\n"
        var payloads: [String] = []
        for byte in stream.utf8 { payloads += parser.append(ByteBuffer(bytes: [byte])) }
        #expect(payloads == [#"{"a":1}"#, "[DONE]"])
        #expect(parser.append(ByteBuffer(string: "data: x\n")).isEmpty)
        #expect(parser.remainder == "data: x\n")
    }
}

/// Runs the built `comet` binary (beside the test bundle) and waits for it without blocking a thread
/// of the cooperative pool, which the in-process server needs.
func runComet(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("comet")
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString).log")
    _ = FileManager.default.createFile(atPath: log.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: log) }
    let handle = try FileHandle(forWritingTo: log)
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    process.standardOutput = handle
    process.standardError = handle
    let status = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, any Error>) in
        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
        do {
            try process.run()
        } catch {
            continuation.resume(throwing: error)
        }
    }
    try handle.close()
    return (status, try String(contentsOf: log, encoding: .utf8))
}
