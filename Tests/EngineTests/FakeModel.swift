import Model
import Sampling

/// A tokenizer over a 64-token vocabulary whose texts the tests know: 0 `<s>` and 1 `</s>` (control),
/// 2...27 "a"..."z", 28 " ", 29 "\n", 30 and 31 the two UTF-8 bytes of "é", 32...63 "aa", "bb", ...
struct FakeTokenizer: Tokenizer {
    static let vocabulary = 64
    static let eos: Int32 = 1
    var vocabularySize: Int { Self.vocabulary }
    var bosTokenID: Int32? { 0 }
    var eosTokenID: Int32? { Self.eos }
    var addsBOS: Bool { false }

    static func bytes(of id: Int32) -> [UInt8] {
        switch id {
        case 0: Array("<s>".utf8)
        case 1: Array("</s>".utf8)
        case 2...27: [UInt8(ascii: "a") + UInt8(id - 2)]
        case 28: [UInt8(ascii: " ")]
        case 29: [UInt8(ascii: "\n")]
        case 30: [0xC3]
        case 31: [0xA9]
        case 32...63: Array(repeating: UInt8(ascii: "a") + UInt8((id - 32) % 26), count: 2)
        default: []
        }
    }

    func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) -> [Int32] {
        text.utf8.compactMap { byte in (0..<Int32(Self.vocabulary)).first { Self.bytes(of: $0) == [byte] } }
    }

    func appendBytes(of id: Int32, atStart: Bool, to bytes: inout [UInt8]) { bytes += Self.bytes(of: id) }
    func isControl(_ id: Int32) -> Bool { id < 2 }
    func tokenID(for text: String) -> Int32? {
        (0..<Int32(Self.vocabulary)).first { Self.bytes(of: $0) == Array(text.utf8) }
    }
}

/// A deterministic "model" whose next token depends on every token before it, so that a wrong or
/// corrupted KV block changes what it says: logits are 8 at `next(after:)` and a small hash-derived
/// value in [0, 1) elsewhere.
enum FakeModel {
    static let vocabulary = FakeTokenizer.vocabulary

    static func hash(_ tokens: some Sequence<Int32>) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for t in tokens { h = (h ^ UInt64(UInt32(bitPattern: t))) &* 0x100_0000_01B3 }
        return h ^ (h >> 29)
    }

    static func next(after context: [Int32]) -> Int32 { Int32(hash(context) % UInt64(vocabulary)) }

    static func logits(after context: [Int32]) -> [Float] {
        let h = hash(context), best = Int(h % UInt64(vocabulary))
        return (0..<vocabulary).map { i in
            i == best ? 8 : Float((h >> UInt64(i % 48)) & 0xFF) / 256
        }
    }

    /// What greedy generation gives: stops before a token of `stop`, after `maxTokens` tokens, or when
    /// prompt plus output reach `contextLength`.
    static func greedy(_ prompt: [Int32], maxTokens: Int, stop: Set<Int32> = [FakeTokenizer.eos], contextLength: Int = 1 << 20) -> [Int32] {
        generate(prompt, sampling: .greedy, maxTokens: maxTokens, stop: stop, contextLength: contextLength)
    }

    /// What sampling with `sampling` gives, as the engine samples (one `Sampler` per request, the
    /// whole sequence as the penalties' history).
    static func generate(
        _ prompt: [Int32], sampling: SamplingParameters, maxTokens: Int, stop: Set<Int32> = [FakeTokenizer.eos],
        contextLength: Int = 1 << 20
    ) -> [Int32] {
        var sampler = Sampler(sampling)
        var tokens = prompt
        var output: [Int32] = []
        while output.count < maxTokens, tokens.count < contextLength {
            let next = sampler.sample(logits(after: tokens), history: tokens)
            if stop.contains(next) { break }
            tokens.append(next)
            output.append(next)
        }
        return output
    }
}
