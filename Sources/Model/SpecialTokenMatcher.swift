/// Finds special and added tokens (`<|im_start|>`, `<s>`, ...) in text before BPE sees it, the way
/// Hugging Face does: leftmost match first, the longest token when several start at the same place.
struct SpecialTokenMatcher: Sendable {
    /// A stretch of the input: plain text to tokenize, or one matched token.
    enum Segment: Equatable {
        case text(Range<Int>)  // byte offsets into the UTF-8 input
        case token(Int32)
    }

    private struct Candidate: Sendable {
        var bytes: [UInt8]
        var id: Int32
        /// Matched only when the caller asks for special tokens (control tokens); user-defined
        /// (added, non-special) tokens are always matched, as in HF and SentencePiece.
        var needsParseSpecial: Bool
    }

    /// Candidates by first byte, longest first.
    private let byFirstByte: [[Candidate]]

    /// `tokens`: (text, id, is a control token) for every token to match; empty texts are ignored.
    init(tokens: [(text: String, id: Int32, isControl: Bool)]) {
        var table = [[Candidate]](repeating: [], count: 256)
        for token in tokens where !token.text.isEmpty {
            let bytes = Array(token.text.utf8)
            table[Int(bytes[0])].append(Candidate(bytes: bytes, id: token.id, needsParseSpecial: token.isControl))
        }
        for i in 0..<256 { table[i].sort { $0.bytes.count > $1.bytes.count } }
        byFirstByte = table
    }

    /// Splits `text` into plain-text and token segments (empty text segments are left out).
    func segments(of text: UnsafeBufferPointer<UInt8>, parseSpecial: Bool, into output: inout [Segment]) {
        var textStart = 0
        var i = 0
        outer: while i < text.count {
            for candidate in byFirstByte[Int(text[i])] where parseSpecial || !candidate.needsParseSpecial {
                let n = candidate.bytes.count
                guard n <= text.count - i, candidate.bytes.withUnsafeBufferPointer({ c in
                    (0..<n).allSatisfy { c[$0] == text[i + $0] }
                }) else { continue }
                if textStart < i { output.append(.text(textStart..<i)) }
                output.append(.token(candidate.id))
                i += n
                textStart = i
                continue outer
            }
            i += 1
        }
        if textStart < text.count { output.append(.text(textStart..<text.count)) }
    }
}
