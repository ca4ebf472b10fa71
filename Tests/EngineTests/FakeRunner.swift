@testable import Engine
import Model
import Sampling
import Synchronization

/// A `ModelRunner` that runs `FakeModel` over a simulated paged KV cache: each step writes every
/// token to its slot (as token and position) and reads the whole context back through the block
/// table, so a wrong table, a block freed too early or a shared block overwritten shows up as
/// different tokens, and a slot never written as an error. It also refuses a step in which one
/// sequence writes a block that another one of the step uses.
final class FakeRunner: ModelRunner, @unchecked Sendable {
    // @unchecked: the engine thread calls `execute`; tests only touch the Mutex-protected parts.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let config: ModelConfig
    let kvBlockSize: Int
    let kvBlockCount: Int
    let maxStepTokens: Int
    let maxStepSequences: Int
    /// [block * blockSize + slot]: (token, position) written there.
    private var slots: [(token: Int32, position: Int)?]
    /// Every step's sequences, for tests to inspect afterwards.
    let steps = Mutex<[[StepSequence]]>([])
    /// Called at the start of each step with its index; throwing fails the step.
    let beforeStep = Mutex<(@Sendable (Int) throws -> Void)?>(nil)

    /// Whether the engine should hand it sampling rows (as to the GPU runner); counted when it does.
    let samplesOnDevice: Bool
    let deviceSampledSteps = Mutex(0)

    init(blockSize: Int = 4, blocks: Int = 64, maxStepTokens: Int = 32, maxStepSequences: Int = 8, contextLength: Int = 4096,
         samplesOnDevice: Bool = false) {
        self.samplesOnDevice = samplesOnDevice
        config = ModelConfig(vocabularySize: FakeModel.vocabulary, dim: 8, layerCount: 1, headCount: 1, kvHeadCount: 1,
                             headDim: 8, ffnDim: 8, ropeBase: 10_000, contextLength: contextLength, eosTokenID: FakeTokenizer.eos)
        kvBlockSize = blockSize
        kvBlockCount = blocks
        self.maxStepTokens = maxStepTokens
        self.maxStepSequences = maxStepSequences
        slots = Array(repeating: nil, count: blocks * blockSize)
    }

    func execute(_ step: [StepSequence], logits: inout [Float]) throws {
        let index = steps.withLock { steps in
            steps.append(step)
            return steps.count - 1
        }
        try beforeStep.withLock { $0 }?(index)
        guard step.count <= maxStepSequences, step.reduce(0, { $0 + $1.tokens.count }) <= maxStepTokens else {
            throw Failure(description: "step over the limits")
        }
        func slot(_ sequence: StepSequence, _ position: Int) throws -> Int {
            guard position / kvBlockSize < sequence.blockTable.count else { throw Failure(description: "position \(position) has no block") }
            let block = Int(sequence.blockTable[position / kvBlockSize])
            guard (0..<kvBlockCount).contains(block) else { throw Failure(description: "block \(block) out of range") }
            return block * kvBlockSize + position % kvBlockSize
        }
        // Blocks each sequence writes; no other sequence of the step may use them.
        var writers: [Int: Int] = [:]
        for (i, sequence) in step.enumerated() {
            for p in sequence.firstPosition..<(sequence.firstPosition + sequence.tokens.count) {
                writers[try slot(sequence, p) / kvBlockSize] = i
            }
        }
        logits.removeAll(keepingCapacity: true)
        for (i, sequence) in step.enumerated() {
            let end = sequence.firstPosition + sequence.tokens.count
            for p in 0..<end {
                let block = try slot(sequence, p) / kvBlockSize
                if let writer = writers[block], writer != i {
                    throw Failure(description: "block \(block) is written by sequence \(writer) and used by \(i)")
                }
            }
            for (k, token) in sequence.tokens.enumerated() {
                slots[try slot(sequence, sequence.firstPosition + k)] = (token, sequence.firstPosition + k)
            }
            guard sequence.needsLogits else { continue }
            var context: [Int32] = []
            for p in 0..<end {
                guard let entry = slots[try slot(sequence, p)], entry.position == p else {
                    throw Failure(description: "position \(p) was never written to its slot")
                }
                context.append(entry.token)
            }
            logits += FakeModel.logits(after: context)
        }
    }

    /// The protocol's CPU procedure (ThresholdSampling), counted.
    func executeSampled(_ step: [StepSequence], rows: [SamplingRow], tokens: inout [SampledToken]) throws {
        deviceSampledSteps.withLock { $0 += 1 }
        var logits: [Float] = []
        try execute(step, logits: &logits)
        tokens = ThresholdSampling.sampleRows(logits, vocab: config.vocabularySize, rows: rows)
    }
}
