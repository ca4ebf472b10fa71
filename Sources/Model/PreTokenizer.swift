/// Splits text into the pieces that byte-level BPE encodes one at a time, exactly as the regular
/// expressions of the Hugging Face / llama.cpp tokenizers do, written out by hand (no regex engine):
///
/// - GPT-2:   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// - Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/// - Qwen2:   Llama 3's with `\p{N}` in place of `\p{N}{1,3}` (every digit a piece of its own).
/// - SmolLM:  every digit (`\p{N}`) is a piece of its own, and GPT-2 splits the text between digits.
///
/// The patterns work on Unicode scalars (code points), not on Swift Characters: a combining accent
/// is its own `[^\s\p{L}\p{N}]` scalar to the regex, whatever grapheme it belongs to.
public enum PreTokenizer: String, Sendable, CaseIterable {
    case gpt2
    case llama3
    case qwen2
    case smolLM

    /// The `Split` regex of Hugging Face tokenizer.json files that use the Llama 3 or Qwen2 split
    /// (followed by a ByteLevel step without its own regex).
    public static let splitPatterns: [String: PreTokenizer] = [
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .llama3,
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .qwen2,
    ]

    /// The pre-tokenizer for a `tokenizer.ggml.pre` value.
    public init(ggufName: String) throws {
        switch ggufName {
        case "default", "gpt2", "gpt-2": self = .gpt2
        case "llama3", "llama-v3", "llama-bpe": self = .llama3
        case "qwen2": self = .qwen2
        case "smollm": self = .smolLM
        default:
            throw ModelError.unsupportedTokenizer(
                "pre-tokenizer '\(ggufName)' (tokenizer.ggml.pre); supported: default, gpt2, llama3, llama-bpe, qwen2, smollm")
        }
    }

    /// The pieces of `text`, in order; their concatenation is `text`.
    public func split(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var ends: [Int] = []
        scalars.withUnsafeBufferPointer { split($0, pieceEnds: &ends) }
        var pieces: [String] = []
        var start = 0
        for end in ends {
            var piece = String.UnicodeScalarView()
            piece.append(contentsOf: scalars[start..<end])
            pieces.append(String(piece))
            start = end
        }
        return pieces
    }

    /// Appends the end index (exclusive, in scalars) of each piece of `text` to `pieceEnds`.
    func split(_ text: UnsafeBufferPointer<Unicode.Scalar>, pieceEnds: inout [Int]) {
        switch self {
        case .gpt2, .llama3, .qwen2:
            Matcher(text: text, end: text.count).run(self, from: 0, into: &pieceEnds)
        case .smolLM:
            // HF runs Digits(individual_digits) first: each number scalar is a segment, and the GPT-2
            // regex runs on each segment between them on its own (so `\s+(?!\S)` sees the segment end).
            var start = 0
            for i in 0..<text.count where ScalarClass(text[i]) == .number {
                if start < i { Matcher(text: text, end: i).run(.gpt2, from: start, into: &pieceEnds) }
                pieceEnds.append(i + 1)
                start = i + 1
            }
            if start < text.count { Matcher(text: text, end: text.count).run(.gpt2, from: start, into: &pieceEnds) }
        }
    }
}

/// The character classes the patterns distinguish.
enum ScalarClass: Equatable {
    case letter  // \p{L}
    case number  // \p{N}
    case space   // \s (the Unicode White_Space property, as in Oniguruma and Rust's regex)
    case other

    init(_ scalar: Unicode.Scalar) {
        if scalar.isASCII {
            // Fast path for the common case; same answers as the general one.
            switch scalar.value {
            case 0x41...0x5A, 0x61...0x7A: self = .letter
            case 0x30...0x39: self = .number
            case 0x09...0x0D, 0x20: self = .space
            default: self = .other
            }
            return
        }
        let properties = scalar.properties
        if properties.isWhitespace { self = .space; return }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: self = .letter
        case .decimalNumber, .letterNumber, .otherNumber: self = .number
        default: self = .other
        }
    }
}

/// One left-to-right scan of a pattern over `text[..<end]` (`end` is the end of the string to the regex).
private struct Matcher {
    let text: UnsafeBufferPointer<Unicode.Scalar>
    let end: Int

    func run(_ pattern: PreTokenizer, from start: Int, into ends: inout [Int]) {
        var i = start
        while i < end {
            switch pattern {
            case .llama3: i = llama3Piece(at: i, maxDigits: 3)
            case .qwen2: i = llama3Piece(at: i, maxDigits: 1)
            case .gpt2, .smolLM: i = gpt2Piece(at: i)
            }
            ends.append(i)
        }
    }

    private func cls(_ i: Int) -> ScalarClass { ScalarClass(text[i]) }
    private func isSpace(_ i: Int) -> Bool { i < end && text[i] == " " }
    private func isNewline(_ i: Int) -> Bool { text[i] == "\n" || text[i] == "\r" }

    /// End of the run of scalars of class `c` starting at `i`.
    private func run(of c: ScalarClass, from i: Int) -> Int {
        var j = i
        while j < end && cls(j) == c { j += 1 }
        return j
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `i`: the match length, or 0.
    private func contraction(at i: Int, ignoringCase: Bool) -> Int {
        guard text[i] == "'", i + 1 < end else { return 0 }
        func lower(_ k: Int) -> Unicode.Scalar? {
            guard k < end else { return nil }
            let s = text[k]
            guard ignoringCase, s.isASCII, ("A"..."Z").contains(s) else { return s }
            return Unicode.Scalar(s.value + 32)
        }
        switch lower(i + 1) {
        case "s", "t", "m", "d": return 2
        case "r", "v": return lower(i + 2) == "e" ? 3 : 0
        case "l": return lower(i + 2) == "l" ? 3 : 0
        default: return 0
        }
    }

    /// `\s+(?!\S)|\s+` at `i` (a space): all of a run that ends the string, else the run but its last
    /// scalar (which then leads the next piece), but at least one scalar.
    private func whitespace(at i: Int) -> Int {
        let k = run(of: .space, from: i)
        return k == end ? k : max(k - 1, i + 1)
    }

    private func gpt2Piece(at i: Int) -> Int {
        let n = contraction(at: i, ignoringCase: false)
        if n > 0 { return i + n }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: one optional ' ' then a run of one class.
        let j = isSpace(i) && i + 1 < end ? i + 1 : i
        let c = cls(j)
        if c != .space { return run(of: c, from: j) }
        return whitespace(at: i)
    }

    /// One piece of the Llama 3 pattern, whose `\p{N}{1,3}` takes at most `maxDigits` numbers (1: Qwen2).
    private func llama3Piece(at i: Int, maxDigits: Int) -> Int {
        let n = contraction(at: i, ignoringCase: true)
        if n > 0 { return i + n }
        let c = cls(i)
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if c == .letter { return run(of: .letter, from: i) }
        if c != .number && !isNewline(i) && i + 1 < end && cls(i + 1) == .letter {
            return run(of: .letter, from: i + 1)
        }
        // `\p{N}{1,3}` (Qwen2: `\p{N}`)
        if c == .number { return min(run(of: .number, from: i), i + maxDigits) }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let j = isSpace(i) && i + 1 < end ? i + 1 : i
        if cls(j) == .other {
            var k = run(of: .other, from: j)
            while k < end && isNewline(k) { k += 1 }
            return k
        }
        // `\s*[\r\n]+`: the whitespace run up to and including its last newline.
        let k = run(of: .space, from: i)
        if let lastNewline = (i..<k).last(where: isNewline) { return lastNewline + 1 }
        return whitespace(at: i)
    }
}
