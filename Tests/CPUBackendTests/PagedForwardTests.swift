import CPUBackend
import Engine
import Foundation
import Model
import Testing

/// Counts the rows each hook call sees and checks that a call never mixes sequences: its positions
/// are consecutive from `firstPosition`, as `ForwardHooks` promises.
final class RowCountingHooks: ForwardHooks {
    var rows = 0
    var calls: [(firstPosition: Int, tokens: Int)] = []
    func linear(layer: Int, slot: LinearSlot, x: UnsafePointer<Float>, tokens: Int, inDim: Int, outDim: Int,
                firstPosition: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool) -> Bool {
        if layer == 0 && slot == .qkv {
            rows += tokens
            calls.append((firstPosition, tokens))
        }
        return false
    }
}

/// The paged, batched forward (the engine's CPU runner) against the contiguous one on a tiny
/// synthetic model: bit-identical logits for several sequences at once, in chunks that cut across
/// sequences, with scattered block tables and a shared prefix.
@Suite struct PagedForwardTests {
    static let sequences: [[Int32]] = [
        [3, 17, 5, 39, 0, 22, 8, 11],
        [4, 4, 9, 1, 30],
        [3, 17, 5, 39, 7, 7, 2, 25, 36],  // shares its first 4 tokens (2 blocks of 2) with sequence 0
    ]

    static func model(_ modelType: String = "qwen2") throws -> LlamaCPUModel {
        let folder = try TinyHFModel(modelType: modelType, seed: 3).write(to: temporaryFolder("paged"))
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Chunks of 4 rows: every batch below spans several chunks and cuts sequences apart.
        return try LlamaCPUModel(weights: HuggingFaceModel(folder: folder), threads: 2, maxBatchTokens: 4)
    }

    /// Each sequence's logits at every position, on its own contiguous cache.
    static func contiguous(_ model: LlamaCPUModel) throws -> [[[Float]]] {
        let vocab = model.config.vocabularySize
        return try sequences.map { tokens in
            var logits: [Float] = []
            try model.forward(tokens, at: 0, cache: model.makeCache(capacity: tokens.count), logits: &logits, for: .all)
            return (0..<tokens.count).map { Array(logits[($0 * vocab)..<(($0 + 1) * vocab)]) }
        }
    }

    @Test(arguments: ["qwen2", "llama"])
    func batchedPagedLogitsEqualTheContiguousOnes(modelType: String) throws {
        let model = try Self.model(modelType)
        let expected = try Self.contiguous(model)
        let vocab = model.config.vocabularySize
        let kv = try PagedKVStore(config: model.config, blockSize: 2, blockCount: 16)
        // Scattered tables; sequence 2 reuses sequence 0's first two blocks (same 4 tokens).
        let tables: [[Int32]] = [[9, 2, 14, 5, 10], [0, 11, 7], [9, 2, 3, 12, 6]]
        let hooks = RowCountingHooks()
        model.hooks = hooks
        defer { model.hooks = nil }

        // Step 1: prompts in part (sequence 2 starts after the shared prefix), every row's logits.
        var logits: [Float] = []
        let first = [(0, 0..<6), (1, 0..<3)]
        try model.forward(first.map { s, range in
            PagedForwardSequence(tokens: Self.sequences[s][range], firstPosition: range.lowerBound, blockTable: tables[s], logits: .all)
        }, kv: kv, logits: &logits)
        var row = 0
        for (s, range) in first {
            for p in range {
                #expect(Array(logits[(row * vocab)..<((row + 1) * vocab)]) == expected[s][p], "sequence \(s) position \(p)")
                row += 1
            }
        }
        // Step 2: the rest, mixed: one sequence's last logits only, one skipped, one all.
        let second: [(Int, Range<Int>, LogitsSelection)] = [(2, 4..<9, .last), (0, 6..<8, .skip), (1, 3..<5, .all)]
        try model.forward(second.map { s, range, selection in
            PagedForwardSequence(tokens: Self.sequences[s][range], firstPosition: range.lowerBound, blockTable: tables[s], logits: selection)
        }, kv: kv, logits: &logits)
        #expect(logits.count == 3 * vocab)
        #expect(Array(logits[0..<vocab]) == expected[2][8])
        #expect(Array(logits[vocab..<(2 * vocab)]) == expected[1][3])
        #expect(Array(logits[(2 * vocab)...]) == expected[1][4])
        // Step 3: one decode token each, through the runner's view of the same cache.
        try model.forward((0..<3).map { s in
            PagedForwardSequence(tokens: [Int32(s + 1)], firstPosition: Self.sequences[s].count, blockTable: tables[s], logits: .last)
        }, kv: kv, logits: &logits)
        for s in 0..<3 {
            var reference: [Float] = []
            let cache = model.makeCache(capacity: Self.sequences[s].count + 1)
            model.hooks = nil
            try model.forward(Self.sequences[s] + [Int32(s + 1)], at: 0, cache: cache, logits: &reference)
            model.hooks = hooks
            #expect(Array(logits[(s * vocab)..<((s + 1) * vocab)]) == reference, "decode of sequence \(s)")
        }
        // The hooks saw every row of the batched calls, a chunk's piece of one sequence per call.
        #expect(hooks.rows == (6 + 3) + (5 + 2 + 2) + 3)
        #expect(hooks.calls.allSatisfy { $0.tokens >= 1 && $0.tokens <= 4 })
        #expect(hooks.calls.prefix(3).map(\.firstPosition) == [0, 4, 0], "step 1: rows 0-3 of sequence 0, then 4-5 and sequence 1")
    }

    @Test func badStepsThrowClearErrors() throws {
        let model = try Self.model()
        let kv = try PagedKVStore(config: model.config, blockSize: 2, blockCount: 4)
        var logits: [Float] = []
        func attempt(_ sequence: PagedForwardSequence) -> String? {
            do { try model.forward([sequence], kv: kv, logits: &logits); return nil } catch { return "\(error)" }
        }
        #expect(attempt(PagedForwardSequence(tokens: [1, 2, 3], firstPosition: 0, blockTable: [0], logits: .last))
            == "the context needs 3 positions but the KV cache holds 2")
        #expect(attempt(PagedForwardSequence(tokens: [1], firstPosition: 0, blockTable: [4], logits: .last))
            == "KV cache does not fit the model: block id 4 is outside the store's 0..<4")
        #expect(attempt(PagedForwardSequence(tokens: [99], firstPosition: 0, blockTable: [0], logits: .last))
            == "token id 99 is outside the vocabulary (0..<40)")
        #expect(attempt(PagedForwardSequence(tokens: [], firstPosition: 0, blockTable: [0], logits: .last)) != nil)
        #expect(throws: CPUBackendError.self) { try PagedKVStore(config: model.config, blockSize: 3, blockCount: 4) }
    }

    /// The runner: limits checked, one logits row per sequence that wants one.
    @Test func theRunnerChecksItsLimitsAndReturnsOneRowPerLogitsSequence() throws {
        let model = try Self.model()
        let runner = try CPUModelRunner(model: model, kvBlockSize: 2, kvBlockCount: 8, maxStepTokens: 6, maxStepSequences: 2)
        #expect(runner.maxStepTokens == 6 && runner.kvBlockCount == 8 && runner.kvBlockSize == 2)
        var logits: [Float] = []
        try runner.execute([
            StepSequence(tokens: [3, 17, 5], firstPosition: 0, blockTable: [0, 1], needsLogits: false),
            StepSequence(tokens: [4, 4, 9], firstPosition: 0, blockTable: [2, 3], needsLogits: true),
        ], logits: &logits)
        #expect(logits.count == model.config.vocabularySize)
        #expect(Array(logits) == (try Self.contiguous(model))[1][2])
        #expect(throws: CPUBackendError.self) {
            try runner.execute([StepSequence(tokens: Array(repeating: 1, count: 7), firstPosition: 0, blockTable: [0, 1, 2, 3], needsLogits: true)], logits: &logits)
        }
        #expect(throws: CPUBackendError.self) {
            try runner.execute((0..<3).map { StepSequence(tokens: [1], firstPosition: 0, blockTable: [Int32($0)], needsLogits: true) }, logits: &logits)
        }
        try runner.execute([], logits: &logits)
        #expect(logits.isEmpty)
    }
}
