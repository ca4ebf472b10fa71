import AsyncHTTPClient
import Engine
import Foundation
import NIOCore
import Testing
@testable import Server

/// The server on a real loopback port: streaming as tokens arrive, cancellation when the client
/// leaves, many concurrent streams, and bodies without a length.
@Suite(.timeLimit(.minutes(30))) struct LiveServerTests {
    static let streamingChat = #"{"model": "fake-model", "max_tokens": 40, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"#

    @Test func chunksArriveWhileTheEngineIsStillGenerating() async throws {
        // The engine holds every request after 3 tokens: they can only reach the client by streaming.
        let engine = FakeEngine(behavior: .init(holdAfterTokens: 3))
        try await withLiveServer(engine) { url in
            try await withHTTPClient { client in
                let (status, body) = try await StreamingCall(client: client, url: url + "/v1/chat/completions").start(Self.streamingChat)
                #expect(status == 200)
                var received = ""
                for try await chunk in body {
                    received += String(buffer: chunk)
                    if received.contains(#""content":"l""#) { engine.release() }  // the third token, mid-generation
                }
                let events = try serverSentEvents(received)
                #expect(events.last == "[DONE]")
                let text = try events.dropLast().compactMap { payload -> String? in
                    let choice = (try jsonObject(payload)["choices"] as? [[String: Any]])?.first
                    return (choice?["delta"] as? [String: Any])?["content"] as? String
                }.joined()
                #expect(text == engine.scriptPrefix(40))
            }
        }
        #expect(engine.cancelledIDs.isEmpty)
    }

    @Test func aClientThatLeavesMidStreamCancelsItsGeneration() async throws {
        let engine = FakeEngine(behavior: .init(tokenDelay: .milliseconds(20)))
        try await withLiveServer(engine) { url in
            try await withHTTPClient { client in
                let reader = Task(executorPreference: serverTestExecutor) {
                    let (_, body) = try await StreamingCall(client: client, url: url + "/v1/chat/completions").start(
                        #"{"model": "fake-model", "max_tokens": 200, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"#)
                    for try await chunk in body where String(buffer: chunk).contains(#""content":"l""#) {
                        return  // leave after a few tokens: the connection closes
                    }
                }
                try await reader.value
                #expect(await eventually { engine.cancelledIDs.count == 1 }, "the engine saw the cancellation")
                #expect(await eventually { engine.blocksInUse == 0 }, "and freed the request's KV blocks")
            }
        }
    }

    @Test func aClientThatLeavesBeforeAWholeResponseCancelsItsGeneration() async throws {
        let engine = FakeEngine(behavior: .init(holdAfterTokens: 1))
        try await withLiveServer(engine) { url in
            try await withHTTPClient { client in
                let call = Task(executorPreference: serverTestExecutor) {
                    try await StreamingCall(client: client, url: url + "/v1/completions").text(#"{"model": "fake-model", "prompt": "Hi"}"#)
                }
                #expect(await eventually { engine.blocksInUse > 0 }, "the request reached the engine")
                call.cancel()  // the client gives up: its connection closes
                _ = await call.result
                #expect(await eventually { engine.cancelledIDs.count == 1 })
                #expect(await eventually { engine.blocksInUse == 0 })
            }
        }
    }

    @Test func sixtyFourConcurrentStreamsAllFinishAndFreeTheirBlocks() async throws {
        let clients = 64
        // Every request is held after its first token until all 64 are in the engine at once.
        let engine = FakeEngine(behavior: .init(tokenDelay: .milliseconds(2), holdAfterTokens: 1))
        try await withLiveServer(engine) { url in
            try await withHTTPClient(connections: clients) { client in
                let call = StreamingCall(client: client, url: url + "/v1/completions")
                let results = try await withThrowingTaskGroup(of: (UInt, String)?.self) { group in
                    for i in 0..<clients {
                        group.addTask {
                            try await call.text("""
                                {"model": "fake-model", "prompt": "client \(i)", "max_tokens": 32, "stream": true, "stream_options": {"include_usage": true}}
                                """)
                        }
                    }
                    group.addTask {
                        let allInFlight = await eventually(polls: 6000) { engine.statistics.runningRequests == clients }
                        engine.release()
                        #expect(allInFlight, "all \(clients) streams were in flight at once")
                        return nil
                    }
                    var results: [(status: UInt, body: String)] = []
                    for try await result in group {
                        if let result { results.append(result) }
                    }
                    return results
                }
                #expect(results.count == clients)
                for (status, body) in results {
                    #expect(status == 200)
                    let events = try serverSentEvents(body)
                    #expect(events.last == "[DONE]")
                    let chunks = try events.dropLast().map(jsonObject)
                    let text = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }.joined()
                    #expect(text == engine.scriptPrefix(32))
                    #expect((chunks.last?["usage"] as? [String: Any])?["completion_tokens"] as? Int == 32)
                    #expect(!body.contains(#""error""#))
                }
            }
        }
        #expect(engine.requests.count == clients)
        #expect(engine.cancelledIDs.isEmpty)
        #expect(await eventually { engine.blocksInUse == 0 }, "every request's KV blocks are back")
    }

    @Test func aChunkedBodyPastTheLimitIs413() async throws {
        try await withLiveServer(FakeEngine(), configuration: APIServerConfiguration(maxBodyBytes: 1000)) { url in
            try await withHTTPClient { client in
                var request = HTTPClientRequest(url: url + "/v1/completions")
                request.method = .POST
                // An async body has no Content-Length: the limit is enforced while reading.
                let prompt = String(repeating: "x", count: 2000)
                let parts = [#"{"model": "fake-model", "prompt": ""#, prompt, #""}"#].map { ByteBuffer(string: $0) }
                request.body = .stream(parts.async, length: .unknown)
                let response = try await client.execute(request, timeout: .seconds(300))
                #expect(response.status.code == 413)
                let body = String(buffer: try await response.body.collect(upTo: 1 << 16))
                #expect(body.contains("request_too_large"))
            }
        }
    }
}

extension Array where Element: Sendable {
    /// The elements as an async sequence (a streamed request body).
    var async: AsyncStream<Element> {
        AsyncStream { continuation in
            for element in self { continuation.yield(element) }
            continuation.finish()
        }
    }
}
