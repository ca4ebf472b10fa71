@testable import Engine
import Testing

/// What one request's stream delivered.
struct Collected {
    var tokens: [GeneratedToken] = []
    var finish: (reason: FinishReason, usage: Usage)?
    var error: (any Error)?
    /// Events after `finished`, or more than one `finished`: must stay 0.
    var eventsAfterFinish = 0

    var ids: [Int32] { tokens.map(\.token) }
    var text: String { tokens.map(\.text).joined() }
}

/// Consumes `stream` to its end.
func collect(_ stream: AsyncThrowingStream<GenerationEvent, any Error>) async -> Collected {
    var result = Collected()
    do {
        for try await event in stream {
            if result.finish != nil { result.eventsAfterFinish += 1 }
            switch event {
            case let .tokens(tokens): result.tokens += tokens
            case let .finished(reason, usage): result.finish = (reason, usage)
            }
        }
    } catch {
        result.error = error
    }
    return result
}

/// An engine over `runner` with the fake tokenizer.
func makeEngine(_ runner: FakeRunner, _ configure: (inout EngineConfiguration) -> Void = { _ in }) throws -> LLMEngine {
    var configuration = EngineConfiguration(modelName: "fake")
    configure(&configuration)
    return try LLMEngine(runner: runner, tokenizer: FakeTokenizer(), chatTemplate: .chatML(defaultSystemPrompt: nil),
                         configuration: configuration)
}

/// Polls `condition` every millisecond for up to 10 s.
func waitUntil(_ condition: () -> Bool) async throws {
    for _ in 0..<10_000 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(1))
    }
    Issue.record("timed out waiting")
}

/// Where the fake runner waits until the test opens it; once open, it stays open.
final class Gate: @unchecked Sendable {
    // @unchecked: `isOpen` is only touched under `lock`.
    private let lock = ConditionLock()
    private var isOpen = false

    func wait() {
        lock.withLock { while !isOpen { lock.wait() } }
    }

    func open() {
        lock.withLock { isOpen = true }
        lock.broadcast()
    }
}

/// SplitMix64, for reproducible random test cases.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
