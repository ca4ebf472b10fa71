/// The limits the scheduler works within.
struct SchedulerConfiguration: Sendable {
    /// The most tokens (all sequences together) one step runs.
    var maxStepTokens: Int
    /// The most sequences one step runs.
    var maxStepSequences: Int
    /// Positions per KV block.
    var blockSize: Int
    /// Blocks in the runner's cache.
    var blockCount: Int
    var prefixCaching: Bool
}

/// One sequence's share of a step: its next `tokenCount` uncomputed tokens.
struct ScheduledChunk {
    let sequence: SequenceState
    let tokenCount: Int
    /// Whether the chunk reaches the sequence's last token, so that the step samples a new one.
    let needsLogits: Bool
}

/// What the scheduler decided for one step.
struct SchedulerOutput {
    /// In the order the runner gets them (and returns logits rows).
    var chunks: [ScheduledChunk] = []
    /// Sequences preempted in this step (their blocks freed; they wait again, first in line).
    var preempted: [SequenceState] = []

    var tokenCount: Int { chunks.reduce(0) { $0 + $1.tokenCount } }

    /// The step as the runner sees it.
    var stepSequences: [StepSequence] {
        chunks.map { chunk in
            let s = chunk.sequence
            return StepSequence(
                tokens: Array(s.tokens[s.computedCount..<(s.computedCount + chunk.tokenCount)]),
                firstPosition: s.computedCount, blockTable: s.blockTable, needsLogits: chunk.needsLogits)
        }
    }
}

/// Iteration-level (continuous) batching, first come first served, with chunked prefill and
/// preemption by recomputation.
///
/// Each step fills a budget of `maxStepTokens` tokens and `maxStepSequences` sequences: first the
/// running sequences that decode (one token each), then the running ones still in their prompt (a
/// chunk each, as far as the budget goes), then waiting requests in arrival order, admitted while
/// their first chunk's blocks are free. A running sequence that needs a block when none is free
/// preempts the most recently admitted running sequence (possibly itself): its blocks are freed and it
/// waits again at the front of the queue, to recompute its prompt and generated tokens later. Since a
/// request that cannot fit the cache alone is refused up front, the oldest running sequence can
/// always proceed: no deadlock.
///
/// Owned by the engine thread. The engine calls `schedule()`, runs the step, calls `didRun(_:)`, then
/// appends each sampled token to its sequence or `remove(_:)`s the finished ones.
final class Scheduler {
    let configuration: SchedulerConfiguration
    private(set) var blocks: KVBlockManager
    /// Not admitted, or preempted, in the order they will be admitted.
    private(set) var waiting: [SequenceState] = []
    /// Admitted and holding blocks, in admission order.
    private(set) var running: [SequenceState] = []
    private(set) var preemptionCount = 0
    /// Tokens whose KV blocks came from the prefix cache, over every admission.
    private(set) var prefixCacheHitTokens = 0
    private var step = 0

    init(_ configuration: SchedulerConfiguration) {
        precondition(configuration.maxStepTokens > 0 && configuration.maxStepSequences > 0, "Scheduler: empty step budget")
        self.configuration = configuration
        blocks = KVBlockManager(blockSize: configuration.blockSize, blockCount: configuration.blockCount,
                                prefixCaching: configuration.prefixCaching)
    }

    var hasWork: Bool { !waiting.isEmpty || !running.isEmpty }
    var blocksInUse: Int { blocks.pool.blocksInUse }

    /// Queues a new request last.
    func add(_ sequence: SequenceState) {
        waiting.append(sequence)
    }

    /// Forgets `sequence` (finished or cancelled), waiting or running, and frees its blocks.
    func remove(_ sequence: SequenceState) {
        if let i = running.firstIndex(where: { $0 === sequence }) {
            running.remove(at: i)
        } else if let i = waiting.firstIndex(where: { $0 === sequence }) {
            waiting.remove(at: i)
        }
        blocks.free(sequence)
    }

    /// Picks the sequences and tokens of the next step and gives them the blocks they need.
    func schedule() -> SchedulerOutput {
        step += 1
        var output = SchedulerOutput()
        var budget = (tokens: configuration.maxStepTokens, sequences: configuration.maxStepSequences)

        // Running sequences: decodes first, then prompts being prefilled in chunks.
        for decoding in [true, false] {
            var i = 0
            while i < running.count, budget.tokens > 0, budget.sequences > 0 {
                let sequence = running[i]
                let remaining = sequence.uncomputedCount
                guard remaining > 0, (remaining == 1) == decoding, sequence.scheduledStep != step else {
                    i += 1
                    continue
                }
                let count = min(remaining, budget.tokens)
                var fits = blocks.grow(sequence, positions: sequence.computedCount + count)
                while !fits, let victim = running.popLast() {
                    preempt(victim, &output, &budget)
                    if victim === sequence { break }
                    fits = blocks.grow(sequence, positions: sequence.computedCount + count)
                }
                guard fits else { break }  // it preempted itself: it was the last one running
                schedule(sequence, count: count, &output, &budget)
                i += 1
            }
        }

        // Waiting requests, in order, while their first chunk fits; none while sequences are being
        // preempted for lack of blocks.
        while output.preempted.isEmpty, let sequence = waiting.first, budget.tokens > 0, budget.sequences > 0 {
            let cached = blocks.cachedPrefix(of: sequence)
            let computed = cached.count * configuration.blockSize
            let count = min(sequence.tokens.count - computed, budget.tokens)
            guard blocks.admit(sequence, cached: cached, positions: computed + count) else { break }
            waiting.removeFirst()
            sequence.computedCount = computed
            if !sequence.wasAdmitted { sequence.cachedPromptTokens = computed }
            sequence.wasAdmitted = true
            prefixCacheHitTokens += computed
            running.append(sequence)
            schedule(sequence, count: count, &output, &budget)
        }
        return output
    }

    /// Records that the step ran: the chunks' tokens are computed, and full blocks join the cache.
    func didRun(_ output: SchedulerOutput) {
        for chunk in output.chunks {
            chunk.sequence.computedCount += chunk.tokenCount
            blocks.registerComputedBlocks(of: chunk.sequence)
        }
    }

    private func schedule(
        _ sequence: SequenceState, count: Int, _ output: inout SchedulerOutput, _ budget: inout (tokens: Int, sequences: Int)
    ) {
        output.chunks.append(ScheduledChunk(
            sequence: sequence, tokenCount: count, needsLogits: sequence.computedCount + count == sequence.tokens.count))
        sequence.scheduledStep = step
        budget.tokens -= count
        budget.sequences -= 1
    }

    /// Frees `victim`'s blocks (it was just taken off `running`), takes it out of this step if it was
    /// in it, and puts it first in line to recompute everything it has. (With this policy only the
    /// newest running sequence can be mid-prompt, so a victim is never already in the step; the check
    /// keeps the step consistent should the policy change.)
    private func preempt(_ victim: SequenceState, _ output: inout SchedulerOutput, _ budget: inout (tokens: Int, sequences: Int)) {
        if victim.scheduledStep == step, let i = output.chunks.firstIndex(where: { $0.sequence === victim }) {
            budget.tokens += output.chunks[i].tokenCount
            budget.sequences += 1
            output.chunks.remove(at: i)
        }
        victim.scheduledStep = -1
        blocks.free(victim)
        victim.computedCount = 0
        waiting.insert(victim, at: 0)
        output.preempted.append(victim)
        preemptionCount += 1
    }
}
