import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// `comet serve` as a user runs it: the real binary on the default model (CPU runner) on a free
/// loopback port; non-streaming and streaming chat through HTTP; then SIGTERM, which must end the
/// process with status 0.
@Suite(.serialized) struct ServeEndToEndTests {
    static let model: String? = {
        let env = ProcessInfo.processInfo.environment
        let folder = env["COMET_ASSETS"] ?? (NSHomeDirectory() + "/.cache/comet/assets")
        let path = env["COMET_TEST_GGUF"] ?? folder + "/SmolLM2-135M-Instruct.Q4_1.gguf"
        if FileManager.default.fileExists(atPath: path) { return path }
        return env["COMET_REQUIRE_ASSETS"] == "1" ? path : nil
    }()

    // The time limit is generous: in the full `swift test` on 2 cores this competes with every
    // CPU-heavy suite (it took 286 s alone and over 600 s under the full suite's load).
    @Test(.enabled(if: model != nil, "SmolLM2 GGUF not found (run scripts/fetch-test-assets.sh)"), .timeLimit(.minutes(30)))
    func chatOverHTTPThenSIGTERM() async throws {
        try await onServerTestThreads { try await run() }
    }

    private func run() async throws {
        let port = 20_000 + Int(getpid() % 20_000)
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("comet")
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve", "--model", Self.model!, "--port", "\(port)", "--ctx", "512", "--max-batch", "4", "--threads", "2"]
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = client.shutdown() }
        let base = "http://127.0.0.1:\(port)"
        // The model loads in a few seconds (longer on a loaded 2-core machine).
        var healthy = false
        for _ in 0..<240 where !healthy {
            if let response = try? await client.execute(HTTPClientRequest(url: base + "/health"), timeout: .seconds(2)),
               response.status == .ok {
                healthy = true
            } else {
                try await Task.sleep(for: .milliseconds(500))
            }
        }
        let startLog = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(healthy, "comet serve did not come up: \(startLog)")
        guard healthy else { return }

        func post(_ body: String) async throws -> (status: UInt, text: String) {
            var request = HTTPClientRequest(url: base + "/v1/chat/completions")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
            let response = try await client.execute(request, timeout: .seconds(300))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            return (response.status.code, String(buffer: bytes))
        }

        let plain = try await post(#"{"model": "\#(Self.model!)", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12, "temperature": 0}"#)
        #expect(plain.status == 200, "\(plain.text)")
        let json = try JSONSerialization.jsonObject(with: Data(plain.text.utf8)) as? [String: Any]
        let choice = (json?["choices"] as? [[String: Any]])?.first
        let content = (choice?["message"] as? [String: Any])?["content"] as? String
        #expect(content?.contains("Paris") == true, "\(plain.text)")
        let usage = json?["usage"] as? [String: Any]
        #expect((usage?["completion_tokens"] as? Int).map { $0 >= 1 && $0 <= 12 } == true, "\(plain.text)")

        let streamed = try await post(#"{"model": "\#(Self.model!)", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12, "temperature": 0, "stream": true}"#)
        #expect(streamed.status == 200)
        let events = streamed.text.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: ") }
        #expect(events.last == "data: [DONE]", "\(streamed.text)")
        // The streamed deltas add up to the non-streamed answer (greedy, same prompt).
        var text = ""
        for event in events.dropLast() {
            let chunk = try JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any]
            let delta = ((chunk?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String
            text += delta ?? ""
        }
        #expect(text == content, "streamed '\(text)' vs '\(content ?? "nil")'")

        let unknown = try await post(#"{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}"#)
        #expect(unknown.status == 404, "\(unknown.text)")

        kill(process.processIdentifier, SIGTERM)
        for _ in 0..<200 where process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!process.isRunning)
        let endLog = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        if !process.isRunning { #expect(process.terminationStatus == 0, "\(endLog)") }
        try handle.close()
    }
}
