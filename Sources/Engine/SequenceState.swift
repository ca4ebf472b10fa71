/// One request's sequence as the scheduler and the block manager see it. Lives on the engine thread
/// only (tests drive it from one task).
final class SequenceState {
    /// The engine's own id (callers' ids may repeat).
    let id: UInt64
    /// Prompt tokens, then every generated token.
    private(set) var tokens: [Int32]
    let promptCount: Int
    /// Tokens whose keys and values are in the cache: `tokens[..<computedCount]`. The next step runs
    /// from here; 0 again after a preemption.
    var computedCount = 0
    /// The cache blocks of positions 0..<blockTable.count * blockSize.
    var blockTable: [Int32] = []
    /// Hashes of the full blocks of `tokens`, computed as the blocks fill (tokens are only appended,
    /// so they stay valid).
    var blockHashes: [BlockHash] = []
    /// Leading blocks of `blockTable` already offered to the prefix-cache table.
    var registeredBlocks = 0
    /// Prompt tokens whose blocks came from the prefix cache when the request was first admitted.
    var cachedPromptTokens = 0
    /// Whether it has ever been admitted (a preempted sequence has).
    var wasAdmitted = false
    /// The step that last scheduled it (to find it among a step's chunks when it is preempted).
    var scheduledStep = -1

    init(id: UInt64, prompt: [Int32]) {
        self.id = id
        tokens = prompt
        promptCount = prompt.count
    }

    var generatedCount: Int { tokens.count - promptCount }
    /// Tokens still to run before the next token can be sampled (1 when decoding).
    var uncomputedCount: Int { tokens.count - computedCount }

    func append(_ token: Int32) { tokens.append(token) }
}
