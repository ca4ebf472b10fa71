/// Names the contents of one full KV block: its tokens and, through `parent`, every token before it
/// (the chained hash of the prefix). Two blocks with equal `BlockHash`es hold the same keys and values,
/// which is what lets a later request reuse a cached block.
///
/// Equality compares the parent's hash and the block's own tokens, so two different blocks only share
/// a name when two different prefixes collide in 64 bits *and* end in the same block of tokens
/// (vLLM v1 keys its table the same way).
struct BlockHash: Hashable, Sendable {
    /// The hash of the whole prefix up to and including this block: the `parent` of the next block.
    let value: UInt64
    /// `value` of the previous block (a fixed seed for the first block).
    let parent: UInt64
    let tokens: [Int32]

    /// The parent of a sequence's first block.
    static let rootParent: UInt64 = 0x243F_6A88_85A3_08D3

    init(parent: UInt64, tokens: ArraySlice<Int32>) {
        var h = Self.mix(parent ^ UInt64(tokens.count))
        for token in tokens {
            h = Self.mix(h &+ UInt64(UInt32(bitPattern: token)) &* 0x9E37_79B9_7F4A_7C15)
        }
        value = h
        self.parent = parent
        self.tokens = Array(tokens)
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(value)
    }

    static func == (a: BlockHash, b: BlockHash) -> Bool {
        a.value == b.value && a.parent == b.parent && a.tokens == b.tokens
    }

    /// SplitMix64's finalizer: every input bit affects every output bit.
    private static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
