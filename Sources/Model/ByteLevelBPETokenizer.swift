/// GPT-2 style byte-level BPE (SmolLM2, Llama 3, GPT-2), as Hugging Face `tokenizers` runs it:
/// special tokens are cut out first, the pre-tokenizer splits the rest into pieces, each piece's UTF-8
/// bytes start as one token each (through GPT-2's byte-to-character table) and are merged by rank.
/// Decoding maps the characters back to bytes, so `decode(encode(s)) == s` for every string.
public struct ByteLevelBPETokenizer: Tokenizer {
    public let preTokenizer: PreTokenizer
    public let addsBOS: Bool
    /// Whether text is put in Unicode NFC before encoding (Qwen2's tokenizer.json normalizer).
    public let normalizesNFC: Bool
    let vocabulary: Vocabulary
    let merges: BPEMerges
    /// The token of each single byte (-1 when the vocabulary lacks it).
    private let byteTokens: [Int32]
    /// Llama 3's `ignore_merges`: a piece that is itself a token is taken whole. Keyed by the
    /// piece's raw bytes; nil for tokenizers without the option.
    private let wholePieceTokens: [[UInt8]: Int32]?

    public var vocabularySize: Int { vocabulary.count }
    public var bosTokenID: Int32? { vocabulary.bosTokenID }
    public var eosTokenID: Int32? { vocabulary.eosTokenID }

    /// - Parameters:
    ///   - tokens: token texts in GPT-2's byte-level alphabet ("Ġthe"); control and user-defined tokens as plain text.
    ///   - merges: "left right" pairs, best first.
    ///   - ignoreMerges: take a piece that is itself a token whole (HF's `ignore_merges`); default: for Llama 3.
    public init(tokens: [String], merges mergeLines: [String], types: [TokenType]?, preTokenizer: PreTokenizer,
                bosTokenID: Int?, eosTokenID: Int?, addsBOS: Bool = false, ignoreMerges: Bool? = nil,
                normalizesNFC: Bool = false) throws {
        let fromCharacter = ByteLevelAlphabet.byteForCharacter
        vocabulary = try Vocabulary(tokens: tokens, types: types, bosTokenID: bosTokenID, eosTokenID: eosTokenID) { text, type in
            guard type == .normal || type == .unknown else { return Array(text.utf8) }
            var bytes: [UInt8] = []
            for scalar in text.unicodeScalars {
                if let byte = fromCharacter[scalar] { bytes.append(byte) } else { bytes += Array(String(scalar).utf8) }
            }
            return bytes
        }
        self.preTokenizer = preTokenizer
        self.addsBOS = addsBOS
        self.normalizesNFC = normalizesNFC

        let ids = vocabulary.idForText
        byteTokens = ByteLevelAlphabet.characterForByte.map { ids[String($0)] ?? -1 }
        var merges = BPEMerges()
        for (rank, line) in mergeLines.enumerated() {
            guard let space = line.firstIndex(of: " ") else {
                throw ModelError.invalidTokenizer("merge \(rank) '\(line)' is not two tokens separated by a space")
            }
            let left = String(line[..<space]), right = String(line[line.index(after: space)...])
            // Merges whose parts or result are not tokens can never apply.
            guard let l = ids[left], let r = ids[right], let result = ids[left + right] else { continue }
            merges.add(left: l, right: r, result: result, rank: Int32(rank))
        }
        self.merges = merges

        if ignoreMerges ?? (preTokenizer == .llama3) {
            var whole: [[UInt8]: Int32] = [:]
            for id in 0..<tokens.count where vocabulary.types[id] == .normal {
                var bytes: [UInt8] = []
                vocabulary.appendDecoded(Int32(id), to: &bytes)
                if whole[bytes] == nil { whole[bytes] = Int32(id) }
            }
            wholePieceTokens = whole
        } else {
            wholePieceTokens = nil
        }
    }

    /// The tokenizer of a GGUF file with `tokenizer.ggml.model == "gpt2"`.
    public init(gguf: GGUFFile) throws {
        let pre = try gguf.string("tokenizer.ggml.pre") ?? "default"
        try self.init(
            tokens: required(gguf.strings("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens"),
            merges: required(gguf.strings("tokenizer.ggml.merges"), "tokenizer.ggml.merges"),
            types: tokenTypes(gguf),
            preTokenizer: PreTokenizer(ggufName: pre),
            bosTokenID: gguf.int("tokenizer.ggml.bos_token_id"),
            eosTokenID: gguf.int("tokenizer.ggml.eos_token_id"),
            addsBOS: gguf.bool("tokenizer.ggml.add_bos_token") ?? false)
    }

    public func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) -> [Int32] {
        var output: [Int32] = []
        if addBOS, let bos = bosTokenID { output.append(bos) }
        // `_nfcCodeUnits` is the standard library's own NFC (no Foundation in this module).
        let input = UTF8Text(normalizesNFC ? String(decoding: text._nfcCodeUnits, as: UTF8.self) : text)
        var segments: [SpecialTokenMatcher.Segment] = []
        input.bytes.withUnsafeBufferPointer { vocabulary.specialTokens.segments(of: $0, parseSpecial: parseSpecial, into: &segments) }

        var pieceEnds: [Int] = []
        var symbols: [Int32] = []
        var scratch = BPEScratch()
        input.scalars.withUnsafeBufferPointer { scalars in
            for segment in segments {
                guard case let .text(byteRange) = segment else {
                    if case let .token(id) = segment { output.append(id) }
                    continue
                }
                let scalarRange = input.scalarRange(bytes: byteRange)
                pieceEnds.removeAll(keepingCapacity: true)
                preTokenizer.split(UnsafeBufferPointer(rebasing: scalars[scalarRange]), pieceEnds: &pieceEnds)
                var start = scalarRange.lowerBound
                for end in pieceEnds {
                    let bytes = input.byteOffsets[start]..<input.byteOffsets[scalarRange.lowerBound + end]
                    encodePiece(input.bytes[bytes], symbols: &symbols, scratch: &scratch, into: &output)
                    start = scalarRange.lowerBound + end
                }
            }
        }
        return output
    }

    private func encodePiece(_ bytes: ArraySlice<UInt8>, symbols: inout [Int32], scratch: inout BPEScratch,
                             into output: inout [Int32]) {
        if let whole = wholePieceTokens?[Array(bytes)] {
            output.append(whole)
            return
        }
        symbols.removeAll(keepingCapacity: true)
        for byte in bytes { symbols.append(byteTokens[Int(byte)]) }
        merges.apply(to: &symbols, scratch: &scratch)
        // A byte missing from the vocabulary (-1) has no token: HF drops it as well (no unk for byte-level).
        for id in symbols where id >= 0 { output.append(id) }
    }

    public func appendBytes(of id: Int32, atStart: Bool, to bytes: inout [UInt8]) {
        vocabulary.appendDecoded(id, to: &bytes)
    }

    public func isControl(_ id: Int32) -> Bool { vocabulary.isControl(id) }

    public func tokenID(for text: String) -> Int32? { vocabulary.idForText[text] }
}

/// GPT-2's reversible map of the 256 byte values onto printable characters (`bytes_to_unicode`):
/// printable Latin-1 bytes stand for themselves, the other 68 take U+0100 onwards in byte order
/// (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A).
enum ByteLevelAlphabet {
    static let characterForByte: [Unicode.Scalar] = {
        var next: UInt32 = 256
        return (0...255).map { (byte: UInt32) -> Unicode.Scalar in
            let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
            if printable { return Unicode.Scalar(byte)! }
            defer { next += 1 }
            return Unicode.Scalar(next)!
        }
    }()

    static let byteForCharacter: [Unicode.Scalar: UInt8] = {
        var map: [Unicode.Scalar: UInt8] = [:]
        for (byte, character) in characterForByte.enumerated() { map[character] = UInt8(byte) }
        return map
    }()
}
