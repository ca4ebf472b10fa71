/// How a token is used, as GGUF (`tokenizer.ggml.token_type`) and SentencePiece number them.
public enum TokenType: Int32, Sendable {
    case normal = 1
    case unknown = 2
    /// Special tokens such as BOS, EOS, `<|im_start|>`: matched in text only when asked to.
    case control = 3
    /// Added tokens that are matched in text as they are (not BPE-merged).
    case userDefined = 4
    case unused = 5
    /// SentencePiece byte-fallback tokens `<0x00>` ... `<0xFF>`.
    case byte = 6
}

/// The token table both tokenizers share: texts, types, what each token decodes to, and the
/// matcher for special tokens.
struct Vocabulary: Sendable {
    let tokens: [String]
    let types: [TokenType]
    let bosTokenID: Int32?
    let eosTokenID: Int32?
    let idForText: [String: Int32]
    let specialTokens: SpecialTokenMatcher

    /// The bytes token i decodes to are `decodedBytes[decodedEnds[i - 1]..<decodedEnds[i]]` (one flat
    /// buffer instead of 50k small arrays).
    private let decodedBytes: [UInt8]
    private let decodedEnds: [Int]

    var count: Int { tokens.count }

    /// `decode(text, type)`: the bytes a token stands for in decoded text.
    init(tokens: [String], types: [TokenType]?, bosTokenID: Int?, eosTokenID: Int?,
         decode: (String, TokenType) -> [UInt8]) throws {
        guard !tokens.isEmpty else { throw ModelError.invalidTokenizer("the vocabulary is empty") }
        let types = types ?? [TokenType](repeating: .normal, count: tokens.count)
        guard types.count == tokens.count else {
            throw ModelError.invalidTokenizer("\(types.count) token types for \(tokens.count) tokens")
        }
        func checkedID(_ id: Int?, _ what: String) throws -> Int32? {
            guard let id else { return nil }
            guard id >= 0 && id < tokens.count else {
                throw ModelError.invalidTokenizer("\(what) token id \(id) is outside the vocabulary (\(tokens.count))")
            }
            return Int32(id)
        }
        self.tokens = tokens
        self.types = types
        self.bosTokenID = try checkedID(bosTokenID, "BOS")
        self.eosTokenID = try checkedID(eosTokenID, "EOS")

        var idForText: [String: Int32] = [:]
        idForText.reserveCapacity(tokens.count)
        var bytes: [UInt8] = []
        var ends: [Int] = []
        ends.reserveCapacity(tokens.count)
        var specials: [(text: String, id: Int32, isControl: Bool)] = []
        for (i, (token, type)) in zip(tokens, types).enumerated() {
            // First id wins for duplicate texts, as in llama.cpp.
            if idForText[token] == nil { idForText[token] = Int32(i) }
            bytes += decode(token, type)
            ends.append(bytes.count)
            if type == .control || type == .userDefined {
                specials.append((token, Int32(i), type == .control))
            }
        }
        self.idForText = idForText
        self.decodedBytes = bytes
        self.decodedEnds = ends
        self.specialTokens = SpecialTokenMatcher(tokens: specials)
    }

    func isControl(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < types.count && types[Int(id)] == .control
    }

    /// Appends what token `id` decodes to (nothing for ids outside the vocabulary), without its first
    /// byte when that byte is `droppingLeading` (SentencePiece's first space).
    func appendDecoded(_ id: Int32, droppingLeading byte: UInt8? = nil, to output: inout [UInt8]) {
        guard id >= 0 && Int(id) < decodedEnds.count else { return }
        var start = id == 0 ? 0 : decodedEnds[Int(id) - 1]
        let end = decodedEnds[Int(id)]
        if let byte, start < end, decodedBytes[start] == byte { start += 1 }
        output.append(contentsOf: decodedBytes[start..<end])
    }
}
