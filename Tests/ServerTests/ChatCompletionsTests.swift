import Engine
import Foundation
import HummingbirdTesting
import Model
import Testing
@testable import Server

/// `POST /v1/chat/completions`: the chat template, the response and chunk shapes, logprobs.
@Suite struct ChatCompletionsTests {
    @Test func appliesTheModelsChatTemplateAndStopsAtEndOfTurn() async throws {
        let engine = FakeEngine()
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/chat/completions", json: """
                {"model": "fake-model", "max_tokens": 5, "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"}]}
                """)
            #expect(response.status == .ok, "\(response.text)")
            let object = try response.jsonObject()
            #expect(Set(object.keys) == ["id", "object", "created", "model", "choices", "usage"])
            #expect((object["id"] as? String)?.hasPrefix("chatcmpl-") == true)
            #expect(object["object"] as? String == "chat.completion")
            let choice = try #require((object["choices"] as? [[String: Any]])?.first)
            #expect(choice["message"] as? [String: String] == ["role": "assistant", "content": "Hello"])
            #expect(choice["finish_reason"] as? String == "length")
            #expect(choice["logprobs"] is NSNull)
            #expect(choice["index"] as? Int == 0)
            let usage = try #require(object["usage"] as? [String: Any])
            #expect(usage["completion_tokens"] as? Int == 5)
        }
        let request = try #require(engine.requests.first)
        let rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        #expect(request.prompt == FakeTokenizer().encode(rendered, addBOS: false, parseSpecial: true))
        #expect(request.prompt.first == 1, "<|im_start|> is one control token")
        #expect(request.stopTokens == [2], "EOS and <|im_end|> (the same id here)")
    }

    @Test func withoutMaxTokensTheReplyMayFillTheContext() async throws {
        let engine = FakeEngine(contextLength: 100)
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/chat/completions", json: #"{"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]}"#)
            #expect(response.status == .ok)
        }
        let request = try #require(engine.requests.first)
        #expect(request.maxTokens == 100 - request.prompt.count)
    }

    @Test func maxCompletionTokensAndTextPartsAndDeveloperRole() async throws {
        let engine = FakeEngine()
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/chat/completions", json: """
                {"model": "fake-model", "max_completion_tokens": 3, "messages": [
                    {"role": "developer", "content": "Rules."},
                    {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]},
                    {"role": "assistant", "content": "Hi!"},
                    {"role": "user", "content": "Again"}]}
                """)
            #expect(try response.decode(ChatCompletionResponse.self).choices[0].message.content == "Hel")
        }
        let request = try #require(engine.requests.first)
        #expect(request.maxTokens == 3)
        let rendered = try ChatTemplate.chatML(defaultSystemPrompt: nil).render([
            ChatMessage(role: .system, content: "Rules."), ChatMessage(role: .user, content: "Hello"),
            ChatMessage(role: .assistant, content: "Hi!"), ChatMessage(role: .user, content: "Again"),
        ])
        #expect(request.prompt == FakeTokenizer().encode(rendered, addBOS: false, parseSpecial: true))
    }

    @Test func streamsChunksWithTheRoleFirstAndFinishLast() async throws {
        try await withRouterClient { client in
            let response = try await client.post("/v1/chat/completions", json: """
                {"model": "fake-model", "max_tokens": 3, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}
                """)
            #expect(response.headers[.contentType] == "text/event-stream")
            let events = try serverSentEvents(response.text)
            #expect(events.last == "[DONE]")
            let chunks = try events.dropLast().map(jsonObject)
            #expect(chunks.count == 5, "role, 3 tokens, finish: \(events)")
            var deltas: [[String: String]] = []
            var finishes: [String?] = []
            for chunk in chunks {
                #expect(Set(chunk.keys) == ["id", "object", "created", "model", "choices"])
                #expect(chunk["object"] as? String == "chat.completion.chunk")
                #expect(chunk["id"] as? String == chunks[0]["id"] as? String)
                let choice = try #require((chunk["choices"] as? [[String: Any]])?.first)
                #expect(Set(choice.keys) == ["index", "delta", "logprobs", "finish_reason"])
                deltas.append(try #require(choice["delta"] as? [String: String]))
                finishes.append(choice["finish_reason"] as? String)
            }
            #expect(deltas == [["role": "assistant", "content": ""], ["content": "H"], ["content": "e"], ["content": "l"], [:]])
            #expect(finishes == [nil, nil, nil, nil, "length"])
        }
    }

    @Test func includeUsageEndsWithAChunkWithoutChoices() async throws {
        try await withRouterClient { client in
            let response = try await client.post("/v1/chat/completions", json: """
                {"model": "fake-model", "max_tokens": 2, "stream": true, "stream_options": {"include_usage": true},
                 "messages": [{"role": "user", "content": "Hi"}]}
                """)
            let chunks = try serverSentEvents(response.text).dropLast().map(jsonObject)
            #expect(chunks.dropLast().allSatisfy { $0["usage"] is NSNull })
            let usage = try #require(chunks.last?["usage"] as? [String: Any])
            #expect(usage["completion_tokens"] as? Int == 2)
            #expect((chunks.last?["choices"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func logprobsWithBytesAndAlternatives() async throws {
        let engine = FakeEngine()
        try await withRouterClient(engine) { client in
            let response = try await client.post("/v1/chat/completions", json: """
                {"model": "fake-model", "max_tokens": 2, "logprobs": true, "top_logprobs": 2, "messages": [{"role": "user", "content": "Hi"}]}
                """)
            let choice = try #require((try response.jsonObject()["choices"] as? [[String: Any]])?.first)
            let logprobs = try #require(choice["logprobs"] as? [String: Any])
            #expect(logprobs["refusal"] is NSNull)
            let content = try #require(logprobs["content"] as? [[String: Any]])
            #expect(content.count == 2)
            #expect(content[0]["token"] as? String == "H")
            #expect(content[0]["logprob"] as? Double == -0.25)
            #expect(content[0]["bytes"] as? [Int] == [72])
            let top = try #require(content[0]["top_logprobs"] as? [[String: Any]])
            #expect(top.map { $0["token"] as? String } == ["H", "I"])
            #expect(top.map { $0["bytes"] as? [Int] } == [[72], [73]])
            #expect(top.map { $0["logprob"] as? Double } == [-0.25, -1.25])

            let plain = try await client.post("/v1/chat/completions", json: """
                {"model": "fake-model", "max_tokens": 1, "logprobs": true, "messages": [{"role": "user", "content": "Hi"}]}
                """)
            let entry = try #require(try plain.decode(ChatCompletionResponse.self).choices[0].logprobs?.content.first)
            #expect(entry.topLogprobs.isEmpty)
        }
        #expect(engine.requests.map(\.topLogprobs) == [2, 0])
    }

    @Test func streamedLogprobsTravelWithTheirChunk() async throws {
        try await withRouterClient { client in
            let response = try await client.post("/v1/chat/completions", json: """
                {"model": "fake-model", "max_tokens": 2, "stream": true, "logprobs": true, "messages": [{"role": "user", "content": "Hi"}]}
                """)
            let chunks = try serverSentEvents(response.text).dropLast().map(jsonObject)
            let tokens = chunks.compactMap { chunk -> String? in
                let choice = (chunk["choices"] as? [[String: Any]])?.first
                return ((choice?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])?.first?["token"] as? String
            }
            #expect(tokens == ["H", "e"])
        }
    }
}
