/// Text to token ids and back.
///
///     let tokenizer = try makeTokenizer(gguf: gguf)
///     let ids = tokenizer.encode("<|im_start|>user\nHi<|im_end|>")   // special tokens are matched
///     let text = tokenizer.decode(ids)                                // == the input
public protocol Tokenizer: Sendable {
    var vocabularySize: Int { get }
    var bosTokenID: Int32? { get }
    var eosTokenID: Int32? { get }
    /// Whether a prompt should start with BOS (`tokenizer.ggml.add_bos_token`). A rendered chat
    /// template already contains BOS where the model wants it: encode those with `addBOS: false`.
    var addsBOS: Bool { get }

    /// The token ids of `text`, with BOS first when `addBOS` (and the vocabulary has one).
    /// With `parseSpecial`, control tokens written in the text (`<|im_start|>`, `<s>`) become their ids;
    /// without it they are encoded as plain text (use that for untrusted user content).
    func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) -> [Int32]

    /// Appends the bytes token `id` stands for in decoded text. `atStart` is true while no
    /// non-control token precedes it (SentencePiece then drops the space that encoding prepended).
    /// Control tokens decode to their text; ids outside the vocabulary decode to nothing.
    func appendBytes(of id: Int32, atStart: Bool, to bytes: inout [UInt8])

    /// True for control tokens (BOS, EOS, `<|im_end|>`, ...).
    func isControl(_ id: Int32) -> Bool

    /// The id of the token whose text is exactly `text` (e.g. "<|im_end|>"), if there is one.
    func tokenID(for text: String) -> Int32?
}

extension Tokenizer {
    /// The token ids of `text`, matching special tokens written in it.
    public func encode(_ text: String, addBOS: Bool = false) -> [Int32] {
        encode(text, addBOS: addBOS, parseSpecial: true)
    }

    /// The text of `ids`. Bytes that are not valid UTF-8 become U+FFFD.
    public func decode(_ ids: [Int32]) -> String {
        var bytes: [UInt8] = []
        var atStart = true
        for id in ids {
            appendBytes(of: id, atStart: atStart, to: &bytes)
            if !isControl(id) { atStart = false }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata: byte-level BPE for
/// `tokenizer.ggml.model == "gpt2"` (SmolLM2, Llama 3), SentencePiece BPE for `"llama"` (Llama 2, Mistral).
public func makeTokenizer(gguf: GGUFFile) throws -> any Tokenizer {
    let model = try required(gguf.string("tokenizer.ggml.model"), "tokenizer.ggml.model")
    switch model {
    case "gpt2": return try ByteLevelBPETokenizer(gguf: gguf)
    case "llama": return try SentencePieceTokenizer(gguf: gguf)
    default: throw ModelError.unsupportedTokenizer("tokenizer model '\(model)' (tokenizer.ggml.model); supported: gpt2, llama")
    }
}

/// Token types from GGUF metadata (nil when absent: every token is then normal).
func tokenTypes(_ gguf: GGUFFile) throws -> [TokenType]? {
    try gguf.ints("tokenizer.ggml.token_type")?.map { raw in
        guard let type = TokenType(rawValue: Int32(truncatingIfNeeded: raw)) else {
            throw ModelError.invalidTokenizer("unknown token type \(raw) in tokenizer.ggml.token_type")
        }
        return type
    }
}
