/// SentencePiece BPE (Llama 2, Mistral), as `sentencepiece` and llama.cpp run it: spaces become '▁',
/// one '▁' is prepended (`add_space_prefix`), the text starts as one symbol per code point, adjacent
/// symbols whose concatenation is a piece merge, best score first (leftmost on ties), and code points
/// without a piece fall back to byte tokens `<0xNN>`.
///
/// Merging works on ids: at load time every piece is split in two at each position, and each split
/// whose halves are both pieces becomes a merge rule. That equals SentencePiece's string lookup as
/// long as every code point of every piece is itself a piece, which BPE training guarantees.
public struct SentencePieceTokenizer: Tokenizer {
    public let addsBOS: Bool
    /// Whether encoding prepends '▁' to text at the start and after each special token (llama.cpp's rule).
    public let addsSpacePrefix: Bool
    let vocabulary: Vocabulary
    let merges: BPEMerges
    private let unknownTokenID: Int32?
    /// Pieces of exactly one code point: the starting symbols.
    private let scalarTokens: [Unicode.Scalar: Int32]
    /// Byte-fallback token of each byte value (-1 when missing).
    private let byteTokens: [Int32]

    public var vocabularySize: Int { vocabulary.count }
    public var bosTokenID: Int32? { vocabulary.bosTokenID }
    public var eosTokenID: Int32? { vocabulary.eosTokenID }

    static let spaceSymbol: Unicode.Scalar = "\u{2581}"  // '▁'

    public init(tokens: [String], scores: [Float], types: [TokenType]?, bosTokenID: Int?, eosTokenID: Int?,
                unknownTokenID: Int?, addsSpacePrefix: Bool = true, addsBOS: Bool = true) throws {
        guard scores.count == tokens.count else {
            throw ModelError.invalidTokenizer("\(scores.count) scores for \(tokens.count) tokens")
        }
        vocabulary = try Vocabulary(tokens: tokens, types: types, bosTokenID: bosTokenID, eosTokenID: eosTokenID) { text, type in
            switch type {
            case .byte: return Self.byteValue(ofPiece: text).map { [$0] } ?? Array(text.utf8)
            case .control, .unknown: return Array(text.utf8)
            case .normal, .userDefined, .unused:
                var bytes: [UInt8] = []
                for scalar in text.unicodeScalars {
                    if scalar == Self.spaceSymbol { bytes.append(0x20) } else { bytes += Array(String(scalar).utf8) }
                }
                return bytes
            }
        }
        if let unknownTokenID, unknownTokenID < 0 || unknownTokenID >= tokens.count {
            throw ModelError.invalidTokenizer("unknown token id \(unknownTokenID) is outside the vocabulary")
        }
        self.unknownTokenID = unknownTokenID.map(Int32.init)
        self.addsSpacePrefix = addsSpacePrefix
        self.addsBOS = addsBOS

        // Only normal pieces take part in merging (SentencePiece freezes user-defined ones).
        var pieceIDs: [String: Int32] = [:]
        var scalarTokens: [Unicode.Scalar: Int32] = [:]
        var byteTokens = [Int32](repeating: -1, count: 256)
        for (i, (token, type)) in zip(tokens, vocabulary.types).enumerated() {
            if type == .byte, let byte = Self.byteValue(ofPiece: token) { byteTokens[Int(byte)] = Int32(i) }
            guard type == .normal, pieceIDs[token] == nil else { continue }
            pieceIDs[token] = Int32(i)
            let scalars = token.unicodeScalars
            if scalars.count == 1 { scalarTokens[scalars.first!] = Int32(i) }
        }
        self.scalarTokens = scalarTokens
        self.byteTokens = byteTokens

        // Rank = position of the piece's score among the distinct scores, best first, so that equal
        // scores tie and the leftmost pair wins, as in SentencePiece.
        let distinctScores = Set(scores.map { $0.isNaN ? -Float.infinity : $0 }).sorted(by: >)
        var rankOfScore: [Float: Int32] = [:]
        for (rank, score) in distinctScores.enumerated() { rankOfScore[score] = Int32(rank) }
        var merges = BPEMerges()
        for (piece, id) in pieceIDs {
            let scalars = Array(piece.unicodeScalars)
            guard scalars.count >= 2 else { continue }
            let score = scores[Int(id)].isNaN ? -Float.infinity : scores[Int(id)]
            for split in 1..<scalars.count {
                guard let left = pieceIDs[Self.string(scalars[..<split])],
                      let right = pieceIDs[Self.string(scalars[split...])] else { continue }
                merges.add(left: left, right: right, result: id, rank: rankOfScore[score]!)
            }
        }
        self.merges = merges
    }

    /// The tokenizer of a GGUF file with `tokenizer.ggml.model == "llama"`.
    public init(gguf: GGUFFile) throws {
        try self.init(
            tokens: required(gguf.strings("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens"),
            scores: required(gguf.floats("tokenizer.ggml.scores"), "tokenizer.ggml.scores"),
            types: tokenTypes(gguf),
            bosTokenID: gguf.int("tokenizer.ggml.bos_token_id"),
            eosTokenID: gguf.int("tokenizer.ggml.eos_token_id"),
            unknownTokenID: gguf.int("tokenizer.ggml.unknown_token_id"),
            addsSpacePrefix: gguf.bool("tokenizer.ggml.add_space_prefix") ?? true,
            addsBOS: gguf.bool("tokenizer.ggml.add_bos_token") ?? true)
    }

    public func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) -> [Int32] {
        var output: [Int32] = []
        if addBOS, let bos = bosTokenID { output.append(bos) }
        let input = UTF8Text(text)
        var segments: [SpecialTokenMatcher.Segment] = []
        input.bytes.withUnsafeBufferPointer { vocabulary.specialTokens.segments(of: $0, parseSpecial: parseSpecial, into: &segments) }

        var symbols: [Int32] = []
        var scratch = BPEScratch()
        var afterSpecial = true  // the text start counts as "after a special token"
        for segment in segments {
            switch segment {
            case let .token(id):
                output.append(id)
                afterSpecial = true
            case let .text(byteRange):
                symbols.removeAll(keepingCapacity: true)
                if addsSpacePrefix && afterSpecial { symbols.append(symbol(for: Self.spaceSymbol)) }
                for i in input.scalarRange(bytes: byteRange) {
                    symbols.append(symbol(for: input.scalars[i] == " " ? Self.spaceSymbol : input.scalars[i]))
                }
                merges.apply(to: &symbols, scratch: &scratch)
                for symbol in symbols { appendToken(of: symbol, to: &output) }
                afterSpecial = false
            }
        }
        return output
    }

    /// The starting symbol of a code point: its piece, or (when there is none) the code point itself
    /// encoded as a negative number, which never merges and falls back to bytes at the end.
    private func symbol(for scalar: Unicode.Scalar) -> Int32 {
        scalarTokens[scalar] ?? -2 - Int32(bitPattern: scalar.value)
    }

    /// Appends the token of a final symbol: itself, or the bytes of an unknown code point (the
    /// unknown token when the vocabulary has no byte tokens; nothing when it has neither).
    private func appendToken(of symbol: Int32, to output: inout [Int32]) {
        if symbol >= 0 { output.append(symbol); return }
        let scalar = Unicode.Scalar(UInt32(bitPattern: -2 - symbol))!
        for byte in String(scalar).utf8 {
            let token = byteTokens[Int(byte)]
            if token >= 0 {
                output.append(token)
            } else if let unknown = unknownTokenID {
                // No byte fallback in this vocabulary: the whole code point is one unknown token.
                output.append(unknown)
                return
            }
        }
    }

    public func appendBytes(of id: Int32, atStart: Bool, to bytes: inout [UInt8]) {
        // SentencePiece drops the '▁' it prepended from the first piece of the text.
        var dropsSpace = false
        if atStart && id >= 0 && Int(id) < vocabulary.count {
            switch vocabulary.types[Int(id)] {
            case .normal, .userDefined, .unused: dropsSpace = true
            case .unknown, .control, .byte: break
            }
        }
        vocabulary.appendDecoded(id, droppingLeading: dropsSpace ? 0x20 : nil, to: &bytes)
    }

    public func isControl(_ id: Int32) -> Bool { vocabulary.isControl(id) }

    public func tokenID(for text: String) -> Int32? { vocabulary.idForText[text] }

    /// 0xAB for the piece "<0xAB>".
    private static func byteValue(ofPiece piece: String) -> UInt8? {
        let utf8 = Array(piece.utf8)
        guard utf8.count == 6, piece.hasPrefix("<0x"), piece.hasSuffix(">") else { return nil }
        return UInt8(String(decoding: utf8[3..<5], as: UTF8.self), radix: 16)
    }

    private static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
