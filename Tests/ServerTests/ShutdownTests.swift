import AsyncHTTPClient
import Engine
import Foundation
import NIOCore
import ServiceLifecycle
import Testing
@testable import Server

/// Graceful shutdown (what SIGINT/SIGTERM trigger): stop accepting, let streams finish within the
/// grace period, cancel what is left after it, then shut the engine down.
@Suite(.timeLimit(.minutes(30))) struct ShutdownTests {
    /// Runs the server's service group (no signals), hands `body` the URL and the group, and
    /// returns `body`'s value once the group has finished.
    func withServiceGroup<T: Sendable>(
        _ engine: FakeEngine, grace: Duration, _ body: @Sendable (String, ServiceGroup) async throws -> T
    ) async throws -> T {
        let server = APIServer(engine: engine, configuration: APIServerConfiguration(port: 0, shutdownGracePeriod: grace), logger: quietLogger)
        let (ports, listening) = AsyncStream.makeStream(of: Int.self)
        let group = server.makeServiceGroup(signals: []) { port in listening.yield(port) }
        return try await onServerTestThreads { try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let value: T
            do {
                value = try await body("http://127.0.0.1:\(port)", group)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            try await tasks.waitForAll()
            return value
        } }
    }

    /// The held streams in these tests end when the test releases them, never by the grace period:
    /// a loaded CI machine once took over 60 s to see the listener close, and a 60 s grace period
    /// cut the held stream mid-test.
    static let longerThanAnyTest = Duration.seconds(25 * 60)

    static let chat = #"{"model": "fake-model", "max_tokens": 30, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"#

    @Test func inFlightStreamsFinishThenTheEngineShutsDown() async throws {
        let engine = FakeEngine(behavior: .init(holdAfterTokens: 3))
        try await withHTTPClient { client in
            let reader = try await withServiceGroup(engine, grace: Self.longerThanAnyTest) { url, group in
                let (status, body) = try await StreamingCall(client: client, url: url + "/v1/chat/completions").start(Self.chat)
                #expect(status == 200)
                let reader = Task(executorPreference: serverTestExecutor) {
                    var text = ""
                    for try await chunk in body { text += String(buffer: chunk) }
                    return text
                }
                #expect(await eventually { engine.blocksInUse > 0 })
                await group.triggerGracefulShutdown()
                try await Task.sleep(for: .milliseconds(200))
                #expect(engine.shutdownCalls == 0, "the engine runs until the server has drained")
                engine.release()
                return reader
            }
            #expect(engine.shutdownCalls == 1)
            // Had the engine stopped first, the stream would end in an "engine is not running" error.
            let events = try serverSentEvents(try await reader.value)
            #expect(events.last == "[DONE]")
            let expectedEvents = 33  // role, 30 tokens, finish, [DONE]
            #expect(events.count == expectedEvents)
            #expect(engine.cancelledIDs.isEmpty)
        }
    }

    @Test func newConnectionsAreRefusedOnceShutdownBegins() async throws {
        let engine = FakeEngine(behavior: .init(holdAfterTokens: 3))
        try await withHTTPClient { client in
            try await withServiceGroup(engine, grace: Self.longerThanAnyTest) { url, group in
                let (_, body) = try await StreamingCall(client: client, url: url + "/v1/chat/completions").start(Self.chat)
                #expect(await eventually { engine.blocksInUse > 0 })
                await group.triggerGracefulShutdown()
                // The listener closes soon after the trigger (asynchronously): poll with fresh connections.
                var health = HTTPClientRequest(url: url + "/health")
                health.headers.add(name: "Connection", value: "close")
                // A connection caught mid-quiesce may be reset instead: poll until one is refused.
                // Hummingbird closes the listener from an unstructured task (the shared pool):
                // poll until it has, within the suite's time limit.
                var refused = false
                try await withHTTPClient(connectTimeout: .milliseconds(200)) { late in
                    while !refused {
                        do {
                            // A connection accepted mid-quiesce may never be answered: a short
                            // timeout turns it into one more poll instead of a long wait.
                            _ = try await late.execute(health, timeout: .seconds(3))
                        } catch {
                            refused = "\(error)".contains("Connection refused")
                        }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                }
                #expect(engine.blocksInUse > 0, "while the held stream still runs")
                engine.release()
                var text = ""
                for try await chunk in body { text += String(buffer: chunk) }
                #expect(text.hasSuffix("data: [DONE]\n\n"))
            }
        }
    }

    @Test func afterTheGracePeriodStreamsAreCancelled() async throws {
        // Held forever after 5 tokens: only the end of the grace period can end this stream.
        let engine = FakeEngine(behavior: .init(holdAfterTokens: 5))
        try await withHTTPClient { client in
            let text = try await withServiceGroup(engine, grace: .milliseconds(300)) { url, group in
                let (_, body) = try await StreamingCall(client: client, url: url + "/v1/chat/completions").start(Self.chat)
                #expect(await eventually { engine.blocksInUse > 0 })
                await group.triggerGracefulShutdown()
                var text = ""
                do {
                    for try await chunk in body { text += String(buffer: chunk) }
                } catch {
                    // The connection was cut: expected.
                }
                return text
            }
            #expect(!text.contains("[DONE]"), "the stream was cut, not finished")
        }
        #expect(engine.shutdownCalls == 1)
        // Cancelled by the server or ended by engine.shutdown(), whichever came first: either way
        // the generation is over and its blocks are free.
        #expect(await eventually { engine.blocksInUse == 0 })
    }
}
