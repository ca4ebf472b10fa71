import Engine
import Foundation
import HummingbirdTesting
import Sampling
import Testing
@testable import Server

/// `POST /v1/completions`: the response shape, and every parameter as the engine receives it.
@Suite struct CompletionsTests {
    @Test func answersInOpenAIsShapeWithUsage() async throws {
        let engine = FakeEngine()
        try await withRouterClient(engine) { client in
            let before = Int(Date().timeIntervalSince1970)
            let response = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 5}"#)
            #expect(response.status == .ok, "\(response.text)")
            #expect(response.headers[.contentType] == "application/json")
            let object = try response.jsonObject()
            #expect(Set(object.keys) == ["id", "object", "created", "model", "choices", "usage"])
            #expect((object["id"] as? String)?.hasPrefix("cmpl-") == true)
            #expect(object["object"] as? String == "text_completion")
            #expect(object["model"] as? String == "fake-model")
            let created = try #require(object["created"] as? Int)
            #expect(created >= before && created <= Int(Date().timeIntervalSince1970), "Unix seconds")
            let choices = try #require(object["choices"] as? [[String: Any]])
            #expect(choices.count == 1)
            #expect(choices[0]["index"] as? Int == 0)
            #expect(choices[0]["text"] as? String == "Hello")
            #expect(choices[0]["finish_reason"] as? String == "length")
            #expect(choices[0]["logprobs"] is NSNull, "OpenAI sends logprobs: null")
            let usage = try #require(object["usage"] as? [String: Any])
            #expect(usage["prompt_tokens"] as? Int == 2)
            #expect(usage["completion_tokens"] as? Int == 5)
            #expect(usage["total_tokens"] as? Int == 7)
            #expect((usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int == 0)
        }
        let request = try #require(engine.requests.first)
        #expect(request.prompt == FakeTokenizer().encode("Hi", addBOS: false, parseSpecial: true))
        #expect(request.maxTokens == 5)
        #expect(request.stopStrings.isEmpty && request.stopTokens == nil && !request.ignoreEndOfText && request.topLogprobs == nil)
        #expect(request.sampling.temperature == 1, "OpenAI's default temperature")
        #expect(request.sampling.penaltyWindow == 0, "OpenAI's penalties see the whole text")
    }

    @Test func maxTokensDefaultsToSixteenAsOpenAIs() async throws {
        let engine = FakeEngine()
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi"}"#)
            #expect(try response.decode(CompletionResponse.self).choices[0].text == engine.scriptPrefix(16))
        }
        #expect(engine.requests.first?.maxTokens == 16)
    }

    @Test func everySamplingParameterReachesTheEngine() async throws {
        let engine = FakeEngine()
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/completions", json: """
                {"model": "fake-model", "prompt": "Hi", "max_tokens": 3, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
                 "min_p": 0.05, "presence_penalty": 0.5, "frequency_penalty": -0.25, "repetition_penalty": 1.1, "seed": 42,
                 "stop": ["x", "yz"], "ignore_eos": true, "user": "someone", "n": 1, "stream": false, "logprobs": null}
                """)
            #expect(response.status == .ok, "\(response.text)")
        }
        let request = try #require(engine.requests.first)
        #expect(request.sampling == SamplingParameters(
            temperature: 0.5, topK: 40, topP: 0.9, minP: 0.05, repetitionPenalty: 1.1, frequencyPenalty: -0.25,
            presencePenalty: 0.5, penaltyWindow: 0, seed: 42))
        #expect(request.stopStrings == ["x", "yz"])
        #expect(request.ignoreEndOfText)
        #expect(request.maxTokens == 3)
    }

    @Test func aSingleStopStringAndSpecialValues() async throws {
        let engine = FakeEngine()
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/completions", json: """
                {"model": "fake-model", "prompt": "Hi", "max_tokens": 40, "stop": "fake", "seed": -1, "top_k": -1, "temperature": 0}
                """)
            let completion = try response.decode(CompletionResponse.self)
            #expect(completion.choices[0].text == "Hello from the ", "the engine stops before the stop string")
            #expect(completion.choices[0].finishReason == "stop")
        }
        let request = try #require(engine.requests.first)
        #expect(request.stopStrings == ["fake"])
        #expect(request.sampling.seed == UInt64.max, "seeds are 64-bit patterns")
        #expect(request.sampling.topK == 0, "vLLM's top_k -1 means off")
        #expect(request.sampling.temperature == 0)
    }

    @Test func ignoreEOSDecidesWhetherEndOfTextEndsTheReply() async throws {
        let engine = FakeEngine(behavior: .init(endOfTextAfter: 2))
        try await withRouterClient(engine) { client in
            let stopped = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 6}"#)
            #expect(try stopped.decode(CompletionResponse.self).choices[0].text == "He")
            let through = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 6, "ignore_eos": true}"#)
            #expect(try through.decode(CompletionResponse.self).choices[0].text == "Hello ")
        }
    }

    @Test func promptsAsTokenIDs() async throws {
        let engine = FakeEngine()
        try await withRouterClient(engine) { client in
            for json in [#""prompt": [10, 20, 1023]"#, #""prompt": [[10, 20, 1023]]"#] {
                let response = try await client.post("/v1/completions", json: #"{"model": "fake-model", "max_tokens": 1, \#(json)}"#)
                #expect(response.status == .ok, "\(json): \(response.text)")
            }
            let single = try await client.post("/v1/completions", json: #"{"model": "fake-model", "max_tokens": 1, "prompt": ["Hi"]}"#)
            #expect(single.status == .ok)
        }
        #expect(engine.requests.map(\.prompt) == [[10, 20, 1023], [10, 20, 1023], [FakeTokenizer.id(of: 72), FakeTokenizer.id(of: 105)]])
    }

    @Test func logprobsInTheLegacyShape() async throws {
        let engine = FakeEngine()
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 3, "logprobs": 2}"#)
            let object = try response.jsonObject()
            let choice = try #require((object["choices"] as? [[String: Any]])?.first)
            let logprobs = try #require(choice["logprobs"] as? [String: Any])
            #expect(logprobs["tokens"] as? [String] == ["H", "e", "l"])
            #expect(logprobs["token_logprobs"] as? [Double] == [-0.25, -0.25, -0.25])
            #expect(logprobs["text_offset"] as? [Int] == [0, 1, 2])
            let top = try #require(logprobs["top_logprobs"] as? [[String: Double]])
            #expect(top.count == 3)
            #expect(top[0] == ["H": -0.25, "I": -1.25])
        }
        #expect(engine.requests.first?.topLogprobs == 2)
    }

    @Test func streamsTextCompletionChunksThenDone() async throws {
        let engine = FakeEngine(behavior: .init(tokensPerEvent: 2))
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 5, "stream": true}"#)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/event-stream")
            let events = try serverSentEvents(response.text)
            #expect(events.last == "[DONE]")
            let chunks = try events.dropLast().map(jsonObject)
            #expect(chunks.count == 4, "3 events of text (2+2+1 tokens), then the finish chunk: \(events)")
            var text = ""
            for chunk in chunks {
                #expect(Set(chunk.keys) == ["id", "object", "created", "model", "choices"], "no usage key without include_usage")
                #expect(chunk["object"] as? String == "text_completion")
                #expect(chunk["id"] as? String == chunks[0]["id"] as? String)
                let choice = try #require((chunk["choices"] as? [[String: Any]])?.first)
                text += try #require(choice["text"] as? String)
                #expect(choice["logprobs"] is NSNull)
            }
            #expect(text == "Hello")
            let finishes = chunks.map { (($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String) }
            #expect(finishes == [nil, nil, nil, "length"])
        }
    }

    @Test func streamOptionsIncludeUsageAddsAUsageChunk() async throws {
        try await withRouterClient { client in
            let response = try await client.post("/v1/completions", json: """
                {"model": "fake-model", "prompt": "Hi", "max_tokens": 2, "stream": true, "stream_options": {"include_usage": true}}
                """)
            let events = try serverSentEvents(response.text)
            #expect(events.last == "[DONE]")
            let chunks = try events.dropLast().map(jsonObject)
            #expect(chunks.dropLast().allSatisfy { $0["usage"] is NSNull }, "every chunk but the last says usage: null")
            let last = try #require(chunks.last)
            #expect((last["choices"] as? [Any])?.isEmpty == true)
            let usage = try #require(last["usage"] as? [String: Any])
            #expect(usage["prompt_tokens"] as? Int == 2 && usage["completion_tokens"] as? Int == 2 && usage["total_tokens"] as? Int == 4)
        }
    }
}
