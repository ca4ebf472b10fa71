import Engine
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import Server

/// One bad request and the error it must get.
struct BadRequest: Sendable, CustomTestStringConvertible {
    var uri = "/v1/completions"
    var json: String
    var status = 400
    var param: String?
    var code: String?
    /// Words the message must contain.
    var says: [String] = []

    var testDescription: String { "\(uri) \(json)" }
}

let chat = "/v1/chat/completions"
let hi = #""messages": [{"role": "user", "content": "Hi"}]"#

/// Every 4xx the API gives for bad input, each an OpenAI error object naming the parameter.
@Suite struct ErrorTests {
    static let badRequests: [BadRequest] = [
        // Malformed JSON and wrong types.
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi""#, code: "invalid_json", says: ["not valid JSON"]),
        BadRequest(json: #"["model"]"#, code: "invalid_json"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": "5"}"#, param: "max_tokens", code: "invalid_type"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 2.5}"#, param: "max_tokens", code: "invalid_type", says: ["integer"]),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "seed": 1e30}"#, param: "seed", code: "invalid_type"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "temperature": "hot"}"#, param: "temperature", code: "invalid_type"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "stream": "yes"}"#, param: "stream", code: "invalid_type"),
        BadRequest(json: #"{"model": "fake-model", "prompt": 42}"#, param: "prompt", code: "invalid_type"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "stop": 5}"#, param: "stop", code: "invalid_type"),
        BadRequest(json: #"{"model": 7, "prompt": "Hi"}"#, param: "model", code: "invalid_type"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": "Hi"}"#, param: "messages", code: "invalid_type"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": [{"role": 5, "content": "Hi"}]}"#, param: "messages.0.role"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": [{"role": "user", "content": 5}]}"#, param: "messages.0.content"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "logprobs": 2, \#(hi)}"#, param: "logprobs", code: "invalid_type"),
        // Missing and empty.
        BadRequest(json: #"{"prompt": "Hi"}"#, param: "model", code: "missing_parameter"),
        BadRequest(json: #"{"model": "fake-model"}"#, param: "prompt", code: "missing_parameter"),
        BadRequest(json: #"{"model": "fake-model", "prompt": ""}"#, param: "prompt", says: ["empty"]),
        BadRequest(json: #"{"model": "fake-model", "prompt": []}"#, param: "prompt", says: ["empty"]),
        BadRequest(uri: chat, json: #"{"model": "fake-model"}"#, param: "messages", code: "missing_parameter"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": []}"#, param: "messages"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": [{"role": "user"}]}"#, param: "messages.0.content", code: "missing_parameter"),
        // Unknown and unsupported parameters, refused by name.
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "temprature": 0}"#, param: "temprature", code: "unsupported_parameter", says: ["temprature"]),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "logit_bias": {"1": 5}}"#, param: "logit_bias", code: "unsupported_parameter"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "echo": true}"#, param: "echo", code: "unsupported_parameter"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "suffix": "x"}"#, param: "suffix", code: "unsupported_parameter"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "best_of": 2}"#, param: "best_of", code: "unsupported_parameter"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "messages": []}"#, param: "messages", code: "unsupported_parameter"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "tools": [], \#(hi)}"#, param: "tools", code: "unsupported_parameter"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "response_format": {"type": "json_object"}, \#(hi)}"#, param: "response_format", code: "unsupported_parameter"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "prompt": "Hi", \#(hi)}"#, param: "prompt", code: "unsupported_parameter"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": [{"role": "user", "content": "Hi", "name": "bob"}]}"#, param: "messages.0.name", code: "unsupported_parameter"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "stream": true, "stream_options": {"include_usage": true, "extra": 1}}"#, param: "stream_options.extra", code: "unsupported_parameter"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": [{"role": "tool", "content": "42"}]}"#, param: "messages.0.role", says: ["tool"]),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}"#, param: "messages.0.content.0.image_url", code: "unsupported_parameter"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, param: "messages.0.content.0.type", says: ["image_url"]),
        // Values out of range.
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "n": 2}"#, param: "n", says: ["n=2"]),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 0}"#, param: "max_tokens"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "temperature": 2.5}"#, param: "temperature"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "top_p": 0}"#, param: "top_p"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "top_k": -2}"#, param: "top_k"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "min_p": 1.5}"#, param: "min_p"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "presence_penalty": 3}"#, param: "presence_penalty"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "frequency_penalty": -3}"#, param: "frequency_penalty"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "repetition_penalty": 0}"#, param: "repetition_penalty"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "stop": ["a", "b", "c", "d", "e"]}"#, param: "stop", says: ["at most 4"]),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "stop": [""]}"#, param: "stop"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "logprobs": 21}"#, param: "logprobs"),
        BadRequest(json: #"{"model": "fake-model", "prompt": [1, 5000]}"#, param: "prompt.1", says: ["vocabulary"]),
        BadRequest(json: #"{"model": "fake-model", "prompt": ["a", "b"]}"#, param: "prompt", says: ["batch of 2"]),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "stream_options": {"include_usage": true}}"#, param: "stream_options"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 3, "max_completion_tokens": 4}"#, param: "max_completion_tokens"),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "top_logprobs": 2, \#(hi)}"#, param: "top_logprobs", says: ["logprobs"]),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "logprobs": true, "top_logprobs": 21, \#(hi)}"#, param: "top_logprobs"),
        // The context: the prompt alone (the engine's refusal), or with max_tokens (the server's).
        BadRequest(json: #"{"model": "fake-model", "prompt": "\#(String(repeating: "x", count: 40))"}"#, param: "prompt", code: "context_length_exceeded", says: ["40 tokens", "32"]),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "messages": [{"role": "user", "content": "\#(String(repeating: "x", count: 40))"}]}"#, param: "messages", code: "context_length_exceeded"),
        BadRequest(json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 31}"#, param: "max_tokens", code: "context_length_exceeded", says: ["at most 30"]),
        BadRequest(uri: chat, json: #"{"model": "fake-model", "max_completion_tokens": 100, \#(hi)}"#, param: "max_completion_tokens", code: "context_length_exceeded"),
        // The model.
        BadRequest(json: #"{"model": "gpt-4", "prompt": "Hi"}"#, status: 404, param: "model", code: "model_not_found", says: ["gpt-4", "fake-model"]),
        BadRequest(uri: chat, json: #"{"model": "gpt-4", \#(hi)}"#, status: 404, param: "model", code: "model_not_found"),
    ]

    @Test(arguments: badRequests)
    func isRefusedWithAnOpenAIError(_ bad: BadRequest) async throws {
        let engine = FakeEngine(contextLength: 32)
        try await withRouterClient(engine) { client in
            let response = try await client.post(bad.uri, json: bad.json)
            #expect(response.status.code == bad.status, "\(response.text)")
            #expect(response.headers[.contentType] == "application/json")
            let error = try response.error()
            #expect(error.type == "invalid_request_error")
            #expect(error.param == bad.param, "\(error.message)")
            if let code = bad.code { #expect(error.code == code, "\(error.message)") }
            for word in bad.says { #expect(error.message.contains(word), "\(error.message)") }
        }
        #expect(engine.blocksInUse == 0)
    }

    @Test func invalidUTF8InTheBodyIsRefused() async throws {
        try await withRouterClient { client in
            var body = ByteBuffer(string: #"{"model": "fake-model", "prompt": "Hi "#)
            body.writeBytes([0xC3, 0x28, 0xFF])
            body.writeString(#""}"#)
            let response = try await client.execute(uri: "/v1/completions", method: .post, body: body)
            #expect(response.status == .badRequest)
            let error = try response.error()
            #expect(error.code == "invalid_utf8" && error.message.contains("UTF-8"))
        }
    }

    @Test func anOversizedBodyIs413() async throws {
        try await withRouterClient(configuration: APIServerConfiguration(maxBodyBytes: 64)) { client in
            let response = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "\#(String(repeating: "x", count: 100))"}"#)
            #expect(response.status == .contentTooLarge)
            let error = try response.error()
            #expect(error.code == "request_too_large" && error.message.contains("64 bytes"))
            let small = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi"}"#)
            #expect(small.status == .ok)
        }
    }

    @Test func anOverloadedEngineIs429() async throws {
        try await withRouterClient(FakeEngine(behavior: .init(maxRunning: 0))) { client in
            for (uri, json) in [("/v1/completions", #"{"model": "fake-model", "prompt": "Hi"}"#), (chat, #"{"model": "fake-model", \#(hi)}"#)] {
                let response = try await client.post(uri, json: json)
                #expect(response.status == .tooManyRequests)
                let error = try response.error()
                #expect(error.type == "rate_limit_error" && error.code == "overloaded" && error.message.contains("retry later"))
            }
        }
    }

    @Test func aStoppedEngineIs503() async throws {
        let engine = FakeEngine()
        await engine.shutdown()
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi"}"#)
            #expect(response.status == .serviceUnavailable)
            #expect(try response.error().code == "engine_stopped")
        }
    }

    @Test func unknownRoutesAndMethodsAreOpenAIErrors() async throws {
        try await withRouterClient { client in
            for (uri, method) in [("/v1/engines", HTTPRequest.Method.get), ("/v1/completions", .get), ("/", .get)] {
                let response = try await client.execute(uri: uri, method: method)
                #expect(response.status == .notFound, "\(method) \(uri)")
                let error = try response.error()
                #expect(error.code == "not_found" && error.message.contains(uri))
            }
        }
    }

    @Test func aRunnerFailureIs500WholeAndAnErrorEventStreamed() async throws {
        let engine = FakeEngine(behavior: .init(failAfterTokens: 3))
        try await withRouterClient(engine) { client in
            let whole = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 10}"#)
            #expect(whole.status == .internalServerError)
            let error = try whole.error()
            #expect(error.type == "server_error" && error.message.contains("injected failure"))

            let streamed = try await client.post(chat, json: #"{"model": "fake-model", "max_tokens": 10, "stream": true, \#(hi)}"#)
            #expect(streamed.status == .ok, "the 200 went out before the failure")
            let events = try serverSentEvents(streamed.text)
            #expect(events.count == 6, "role, 3 tokens, the error, [DONE]: \(events)")
            #expect(events.last == "[DONE]")
            let failure = try #require(try jsonObject(events[4])["error"] as? [String: Any])
            #expect(failure["type"] as? String == "server_error")
            #expect((failure["message"] as? String)?.contains("injected failure") == true)
        }
        #expect(engine.blocksInUse == 0)
    }
}
