import ArgumentParser
import ServeBenchmark

extension Bench {
    struct ServeLoad: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Load a running `comet serve` (or any OpenAI-compatible server): throughput, TTFT and TPOT p50/p99.",
            discussion: """
                Each request is a streaming completion of --input-len prompt token ids (seeded, distinct per request) \
                asking for exactly --output-len tokens (ignore_eos), sent by --concurrency clients until --requests are \
                done. Exits 1 if any request failed.
                """)

        @Option(help: "The server's base URL (http://HOST:PORT).")
        var url = "http://127.0.0.1:8000"

        @Option(help: "Clients sending at the same time.")
        var concurrency = 8

        @Option(help: "Requests in all.")
        var requests = 64

        @Option(help: "Prompt tokens per request.")
        var inputLen = 128

        @Option(help: "Generated tokens per request.")
        var outputLen = 128

        @Option(help: "Sent as 'Authorization: Bearer KEY'.")
        var apiKey: String?

        @Option(help: "Seed of the prompts' token ids.")
        var seed: UInt64 = 0

        @Option(help: "Also write the result as JSON to this file.")
        var json: String?

        func validate() throws {
            guard url.hasPrefix("http://") else { throw ValidationError("--url must start with http:// (plain HTTP: a local or lab server)") }
            guard concurrency >= 1 && concurrency <= 4096 else { throw ValidationError("--concurrency must be between 1 and 4096") }
            guard requests >= 1 else { throw ValidationError("--requests must be at least 1") }
            guard inputLen >= 1 && outputLen >= 1 else { throw ValidationError("--input-len and --output-len must be at least 1") }
        }

        func run() async throws {
            let benchmark = ServeBenchmark(.init(
                url: url, concurrency: concurrency, requests: requests, inputLength: inputLen, outputLength: outputLen,
                apiKey: apiKey, seed: seed))
            let result: ServeBenchmarkResult
            do {
                result = try await benchmark.run()
            } catch {
                throw fail("bench serve: \(error)")
            }
            print(result.table)
            if let json { try orFail("--json \(json)") { try Bench.writeJSON(result, to: json) } }
            if result.failed > 0 { throw ExitCode(1) }
        }
    }
}
