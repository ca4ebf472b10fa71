/// Turns generated tokens into text one token at a time, for streaming responses.
///
/// A character may span tokens (an emoji is often 2-4 byte tokens), so bytes that could still become a
/// valid character are held back until the next token completes them: the pieces never contain a
/// U+FFFD that the whole text would not, and their concatenation (with `finish()`) equals
/// `tokenizer.decode(allTokens)`.
///
///     var stream = StreamingDetokenizer(tokenizer: tokenizer)
///     for id in generated { send(stream.append(id)) }
///     send(stream.finish())
public struct StreamingDetokenizer {
    public let tokenizer: any Tokenizer
    private var pending: [UInt8] = []
    private var atStart = true

    /// - Parameter continuingText: the tokens continue text already decoded (a prompt with a
    ///   non-control token): SentencePiece then keeps the first token's leading space, as decoding
    ///   prompt and continuation together would.
    public init(tokenizer: any Tokenizer, continuingText: Bool = false) {
        self.tokenizer = tokenizer
        atStart = !continuingText
    }

    /// Adds one token; returns the text it completes (often empty while a character is incomplete).
    public mutating func append(_ id: Int32) -> String {
        tokenizer.appendBytes(of: id, atStart: atStart, to: &pending)
        if !tokenizer.isControl(id) { atStart = false }
        let complete = pending.count - Self.incompleteSuffixLength(pending)
        guard complete > 0 else { return "" }
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// True while bytes of an unfinished character are held back (the text of the tokens so far is
    /// not all known yet).
    public var isHoldingBytes: Bool { !pending.isEmpty }

    /// Returns whatever is held back (an unfinished character becomes U+FFFD) and starts over.
    public mutating func finish() -> String {
        defer {
            pending.removeAll()
            atStart = true
        }
        return String(decoding: pending, as: UTF8.self)
    }

    /// The length of the trailing bytes of `bytes` that begin a UTF-8 sequence and could still be
    /// completed by more bytes (0 when the end is complete or hopelessly invalid).
    static func incompleteSuffixLength(_ bytes: [UInt8]) -> Int {
        guard !bytes.isEmpty else { return 0 }
        // A sequence is at most 4 bytes: look for its lead byte among the last 3.
        for length in 1...min(3, bytes.count) {
            let lead = bytes[bytes.count - length]
            if lead & 0xC0 == 0x80 { continue }  // continuation byte: keep looking left
            let needed: Int
            switch lead {
            case 0xC2...0xDF: needed = 2
            case 0xE0...0xEF: needed = 3
            case 0xF0...0xF4: needed = 4
            default: return 0  // ASCII or a byte that never starts a sequence
            }
            guard length < needed else { return 0 }  // the sequence is complete
            // The second byte of some leads has a narrower range (no overlongs, surrogates, > U+10FFFF).
            if length >= 2 {
                let second = bytes[bytes.count - length + 1]
                let valid: ClosedRange<UInt8> = switch lead {
                case 0xE0: 0xA0...0xBF
                case 0xED: 0x80...0x9F
                case 0xF0: 0x90...0xBF
                case 0xF4: 0x80...0x8F
                default: 0x80...0xBF
                }
                guard valid.contains(second) else { return 0 }
            }
            return length
        }
        return 0
    }
}
