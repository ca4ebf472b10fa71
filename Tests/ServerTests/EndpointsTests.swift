import Engine
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import Server

/// `/v1/models`, `/health`, `/metrics` and the API key.
@Suite struct EndpointsTests {
    @Test func modelsListsTheEnginesModel() async throws {
        try await withRouterClient(FakeEngine(contextLength: 2048)) { client in
            let response = try await client.get("/v1/models")
            #expect(response.status == .ok)
            let object = try response.jsonObject()
            #expect(object["object"] as? String == "list")
            let models = try #require(object["data"] as? [[String: Any]])
            #expect(models.count == 1)
            #expect(models[0]["id"] as? String == "fake-model")
            #expect(models[0]["object"] as? String == "model")
            #expect(models[0]["owned_by"] as? String == "comet")
            #expect(models[0]["max_model_len"] as? Int == 2048)
            #expect(models[0]["created"] is Int)
        }
    }

    @Test func healthAnswersOK() async throws {
        try await withRouterClient { client in
            let response = try await client.get("/health")
            #expect(response.status == .ok)
            #expect(try response.jsonObject()["status"] as? String == "ok")
        }
    }

    @Test func metricsCountRequestsTokensAndLatencyAndReadTheEngine() async throws {
        let engine = FakeEngine(behavior: .init(kvBlocksTotal: 777))
        try await withRouterClient(engine) { client in
            _ = try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 4}"#)
            _ = try await client.post("/v1/chat/completions", json: #"{"model": "fake-model", "max_tokens": 3, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"#)
            _ = try await client.post("/v1/completions", json: #"{"model": "nope", "prompt": "Hi"}"#)
            _ = try await client.get("/no/such/route")
            let response = try await client.get("/metrics")
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let lines = Set(response.text.split(separator: "\n").map(String.init))
            for expected in [
                #"comet_http_requests_total{endpoint="/v1/completions",status="200"} 1"#,
                #"comet_http_requests_total{endpoint="/v1/chat/completions",status="200"} 1"#,
                #"comet_http_requests_total{endpoint="/v1/completions",status="404"} 1"#,
                #"comet_http_requests_total{endpoint="unmatched",status="404"} 1"#,
                "comet_prompt_tokens_total 23",  // "Hi" (2) and the rendered chat prompt (21)
                "comet_generation_tokens_total 7",
                "comet_time_to_first_token_seconds_count 2",
                "comet_time_per_output_token_seconds_count 2",
                "comet_kv_blocks_total 777.0",
                "comet_kv_blocks_in_use 0.0",
                "comet_requests_running 0.0",
                "comet_requests_waiting 0.0",
                "comet_batch_size 0.0",  // gauges are floats in Prometheus' text
                "# TYPE comet_time_to_first_token_seconds histogram",
            ] {
                #expect(lines.contains(expected), "missing \(expected) in:\n\(response.text)")
            }
            #expect(lines.contains { $0.hasPrefix(#"comet_time_to_first_token_seconds_bucket{le="0.01"}"#) })
        }
    }

    @Test func metricsShowTheEnginesLoadWhileItRuns() async throws {
        let engine = FakeEngine(behavior: .init(blockSize: 4, holdAfterTokens: 1))
        try await withRouterClient(engine) { client in
            let running = Task(executorPreference: serverTestExecutor) {
                try await client.post("/v1/completions", json: #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 10}"#)
            }
            #expect(await eventually { engine.blocksInUse > 0 })
            let text = try await client.get("/metrics").text
            #expect(text.contains("comet_kv_blocks_in_use 3.0\n"), "(2 + 10) / 4 blocks: \(text)")
            #expect(text.contains("comet_requests_running 1.0\n"))
            #expect(text.contains("comet_batch_size 1.0\n"))
            engine.release()
            #expect(try await running.value.status == .ok)
        }
    }

    @Test func anAPIKeyGuardsEveryV1RouteInConstantTime() async throws {
        let configuration = APIServerConfiguration(apiKey: "s3cret-key")
        try await withRouterClient(configuration: configuration) { client in
            let completion = #"{"model": "fake-model", "prompt": "Hi", "max_tokens": 1}"#
            for headers: HTTPFields in [[:], [.authorization: "Bearer wrong"], [.authorization: "Bearer s3cret-ke"],
                                        [.authorization: "Bearer s3cret-key2"], [.authorization: "Basic s3cret-key"],
                                        [.authorization: "s3cret-key"]] {
                let response = try await client.post("/v1/completions", json: completion, headers: headers)
                #expect(response.status == .unauthorized, "\(headers)")
                let error = try response.error()
                #expect(error.code == "invalid_api_key" && error.type == "invalid_request_error")
            }
            #expect(try await client.get("/v1/models").status == .unauthorized)
            #expect(try await client.get("/v1/no-such-route").status == .unauthorized, "no probing of /v1 without the key")
            #expect(try await client.post("/v1/chat/completions", json: "{}").status == .unauthorized, "auth before parsing")

            let good: HTTPFields = [.authorization: "Bearer s3cret-key"]
            #expect(try await client.post("/v1/completions", json: completion, headers: good).status == .ok)
            #expect(try await client.post("/v1/completions", json: completion, headers: [.authorization: "bearer s3cret-key"]).status == .ok)
            #expect(try await client.get("/v1/models", headers: good).status == .ok)
            #expect(try await client.get("/health").status == .ok, "health stays open")
            #expect(try await client.get("/metrics").status == .ok, "metrics stay open")
        }
    }

    @Test func withoutAnAPIKeyNoHeaderIsNeeded() async throws {
        try await withRouterClient { client in
            let response = try await client.get("/v1/models")
            #expect(response.status == .ok)
        }
    }

    @Test func constantTimeComparison() {
        let equals = BearerAuthMiddleware<BasicRequestContext>.constantTimeEquals
        let key = Array("abc".utf8)
        #expect(equals(Array("abc".utf8), key))
        #expect(!equals(Array("abd".utf8), key))
        #expect(!equals(Array("ab".utf8), key))
        #expect(!equals(Array("abcd".utf8), key))
        #expect(!equals([], key))
        #expect(!equals(Array("abc\0".utf8), key), "a trailing zero byte is not padding")
        #expect(BearerAuthMiddleware<BasicRequestContext>.bearerToken("Bearer  a b") == "a b")
        #expect(BearerAuthMiddleware<BasicRequestContext>.bearerToken("Bearer") == nil)
    }
}
