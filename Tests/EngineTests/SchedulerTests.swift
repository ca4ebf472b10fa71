@testable import Engine
import Testing

/// The scheduler alone, driven the way the engine drives it: schedule, (run), didRun, append a
/// token to every sequence that got logits, remove the finished ones.
@Suite struct SchedulerTests {
    static func scheduler(tokens: Int = 8, sequences: Int = 4, blockSize: Int = 4, blocks: Int = 16, caching: Bool = true) -> Scheduler {
        Scheduler(SchedulerConfiguration(maxStepTokens: tokens, maxStepSequences: sequences, blockSize: blockSize,
                                         blockCount: blocks, prefixCaching: caching))
    }

    /// One step; returns (sequence id, token count) of each chunk. Sequences that reach `outputs`
    /// generated tokens are removed.
    @discardableResult
    static func step(_ scheduler: Scheduler, outputs: Int = 100) -> [(id: UInt64, count: Int)] {
        let output = scheduler.schedule()
        scheduler.didRun(output)
        for chunk in output.chunks where chunk.needsLogits {
            chunk.sequence.append(Int32(chunk.sequence.tokens.count))
            if chunk.sequence.generatedCount >= outputs { scheduler.remove(chunk.sequence) }
        }
        return output.chunks.map { ($0.sequence.id, $0.tokenCount) }
    }

    static func same(_ a: [(id: UInt64, count: Int)], _ b: [(UInt64, Int)]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.id == $1.0 && $0.count == $1.1 }
    }

    @Test func promptsArePrefilledInChunksAndDecodesGoFirst() {
        let s = Self.scheduler(tokens: 8)
        s.add(SequenceState(id: 1, prompt: Array(repeating: 5, count: 10)))
        s.add(SequenceState(id: 2, prompt: Array(repeating: 6, count: 10)))
        #expect(Self.same(Self.step(s), [(1, 8)]))
        #expect(Self.same(Self.step(s), [(1, 2), (2, 6)]))
        // 1 now decodes: it goes first, then the rest of 2's prompt.
        #expect(Self.same(Self.step(s), [(1, 1), (2, 4)]))
        #expect(Self.same(Self.step(s), [(1, 1), (2, 1)]))
    }

    @Test func waitingRequestsAreAdmittedInArrivalOrderWithinTheBatchSize() {
        let s = Self.scheduler(tokens: 64, sequences: 2)
        for id in 1...4 { s.add(SequenceState(id: UInt64(id), prompt: [1, 2, 3])) }
        #expect(Self.same(Self.step(s, outputs: 2), [(1, 3), (2, 3)]))
        #expect(Self.same(Self.step(s, outputs: 2), [(1, 1), (2, 1)]))
        #expect(Self.same(Self.step(s, outputs: 2), [(3, 3), (4, 3)]))
        #expect(s.waiting.isEmpty && s.running.count == 2)
    }

    @Test func theMostRecentlyAdmittedIsPreemptedAndWaitsFirstInLine() {
        // 4 blocks of 2: two sequences of 3 prompt tokens take 2 blocks each; the first decode that
        // needs a third block preempts the second sequence.
        let s = Self.scheduler(tokens: 16, sequences: 4, blockSize: 2, blocks: 4)
        let a = SequenceState(id: 1, prompt: [1, 2, 3]), b = SequenceState(id: 2, prompt: [4, 5, 6])
        let c = SequenceState(id: 3, prompt: [7])
        s.add(a)
        s.add(b)
        s.add(c)
        #expect(Self.same(Self.step(s), [(1, 3), (2, 3)]), "c does not fit")
        #expect(Self.same(Self.step(s), [(1, 1), (2, 1)]))  // positions 3: still in block 1
        // a needs a block for position 4: b goes, back to the front of the queue, before c.
        #expect(Self.same(Self.step(s), [(1, 1)]))
        #expect(s.preemptionCount == 1)
        #expect(s.waiting.map(\.id) == [2, 3])
        #expect(b.computedCount == 0 && b.blockTable.isEmpty && b.tokens.count == 5, "b keeps its generated tokens")
        s.remove(a)
        // b recomputes its prompt and generated tokens. Its first block is still cached; its second
        // was evicted when a needed a block.
        let output = s.schedule()
        #expect(output.chunks.map(\.sequence.id) == [2, 3])
        #expect(b.computedCount == 2 && output.chunks[0].tokenCount == 3)
        #expect(output.chunks[0].needsLogits)
    }

    @Test func aSequenceThatCannotGrowAloneIsPreemptedItself() {
        let s = Self.scheduler(tokens: 16, sequences: 4, blockSize: 2, blocks: 2)
        let a = SequenceState(id: 1, prompt: [1, 2, 3])
        s.add(a)
        Self.step(s)
        Self.step(s)  // position 3 fits block 1
        // Position 4 needs a third block that does not exist: a preempts itself (the engine refuses
        // such requests at submission; the scheduler still must not loop or crash).
        #expect(Self.step(s).isEmpty)
        #expect(s.waiting.map(\.id) == [1] && s.running.isEmpty && s.blocksInUse == 0)
    }

    @Test func aSequenceInTheMiddleOfItsPromptCanBePreempted() {
        // a decodes; b, admitted after it, is halfway through its prompt when a needs a block.
        let s = Self.scheduler(tokens: 4, sequences: 4, blockSize: 2, blocks: 4)
        let a = SequenceState(id: 1, prompt: [1, 2, 3])
        let b = SequenceState(id: 2, prompt: Array(repeating: 4, count: 8))
        s.add(a)
        s.add(b)
        #expect(Self.same(Self.step(s), [(1, 3), (2, 1)]))
        #expect(Self.same(Self.step(s), [(1, 1), (2, 3)]))
        let output = s.schedule()
        #expect(output.preempted.map(\.id) == [2])
        #expect(output.chunks.map(\.sequence.id) == [1] && output.chunks[0].tokenCount == 1)
        #expect(b.computedCount == 0 && b.blockTable.isEmpty && s.waiting.map(\.id) == [2])
        #expect(s.blocksInUse == 3)
    }
}
