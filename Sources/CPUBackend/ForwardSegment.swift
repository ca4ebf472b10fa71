/// One sequence's rows in a forward call: `count` tokens at positions `firstPosition...`, whose keys
/// and values go to (and whose attention reads from) `storage`.
struct ForwardSegment<Storage: KVStorage> {
    var storage: Storage
    var firstPosition: Int
    var count: Int
    var logits: LogitsSelection

    /// Rows of logits this segment produces.
    var logitRows: Int {
        switch logits {
        case .last: 1
        case .all: count
        case .skip: 0
        }
    }
}

/// Consecutive rows of one segment inside one chunk (the scratch holds at most `maxBatchTokens`
/// rows, so a call runs in chunks and a long segment spans several).
struct ChunkPiece {
    /// Index of the segment in the call.
    var segment: Int
    /// The piece's first row in the chunk.
    var row: Int
    var count: Int
    /// The segment's token index of the piece's first row.
    var offset: Int
    /// The position of the piece's first row.
    var position: Int
}
