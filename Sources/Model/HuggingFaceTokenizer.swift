/// The tokenizer and chat template of a Hugging Face model folder: `tokenizer.json` (the `tokenizers`
/// library's format) for byte-level BPE, and `tokenizer_config.json` (or `chat_template.jinja`) for
/// BOS/EOS, `add_bos_token` and the chat template.
///
/// Accepted: model type BPE without byte fallback; pre-tokenizer ByteLevel (GPT-2), Digits + ByteLevel
/// (SmolLM2), or Split with Llama 3's or Qwen2's regex + ByteLevel; normalizer none or NFC; added tokens
/// (special ones are control tokens, matched in text only with `parseSpecial`). Anything else is one
/// `unsupportedTokenizer` error that says what was found.
public enum HuggingFaceTokenizer {
    public static let tokenizerFile = "tokenizer.json"
    public static let configFile = "tokenizer_config.json"
    public static let chatTemplateFile = "chat_template.jinja"

    /// The tokenizer of `folder`; `config` supplies BOS/EOS ids that tokenizer_config.json leaves out.
    public static func load(folder: String, config: ModelConfig) throws -> ByteLevelBPETokenizer {
        let path = folder + "/" + tokenizerFile
        let json = try JSONFile.decode(TokenizerJSON.self, path: path, role: "a Hugging Face model folder needs its tokenizer.json")
        let settings = try tokenizerConfig(folder: folder)
        func unsupported(_ what: String) -> ModelError { .unsupportedTokenizer("\(path): \(what)") }

        let model = json.model
        guard model.type == nil || model.type == "BPE", let vocab = model.vocab, let merges = model.merges else {
            throw unsupported("model type '\(model.type ?? "?")'; supported: BPE with vocab and merges")
        }
        guard model.byteFallback != true else {
            throw unsupported("BPE with byte_fallback (SentencePiece style, as Llama 2 and Mistral); supported: byte-level BPE")
        }
        let normalizesNFC: Bool
        switch json.normalizer?.type {
        case nil: normalizesNFC = false
        case "NFC": normalizesNFC = true
        case let other?: throw unsupported("normalizer '\(other)'; supported: none, NFC")
        }
        if let decoder = json.decoder?.type, decoder != "ByteLevel" {
            throw unsupported("decoder '\(decoder)'; supported: ByteLevel")
        }
        let preTokenizer = try Self.preTokenizer(json.preTokenizer, unsupported: unsupported)

        // The id space: the vocab plus added tokens (which may lie past it), holes left unused.
        let added = json.addedTokens ?? []
        let count = max(vocab.values.max() ?? -1, added.map(\.id).max() ?? -1) + 1
        guard count > 0, vocab.values.allSatisfy({ $0 >= 0 }), added.allSatisfy({ $0.id >= 0 }) else {
            throw ModelError.invalidTokenizer("\(path): negative or no token ids")
        }
        var tokens = [String](repeating: "", count: count)
        var types = [TokenType](repeating: .unused, count: count)
        for (text, id) in vocab {
            tokens[id] = text
            types[id] = .normal
        }
        for token in added {
            tokens[token.id] = token.content
            types[token.id] = token.special ? .control : .userDefined
        }

        let ids = Dictionary(tokens.enumerated().map { ($1, $0) }, uniquingKeysWith: min)
        let bos = settings.bosToken.flatMap { ids[$0.content] } ?? config.bosTokenID.map(Int.init)
        let eos = settings.eosToken.flatMap { ids[$0.content] } ?? config.eosTokenID.map(Int.init)
        let addsBOS = settings.addBosToken ?? json.postProcessor.map { startsWithSpecialToken($0, bos.map { tokens[$0] }) } ?? false
        return try ByteLevelBPETokenizer(
            tokens: tokens, merges: merges.map(\.line), types: types, preTokenizer: preTokenizer,
            bosTokenID: bos, eosTokenID: eos, addsBOS: addsBOS, ignoreMerges: model.ignoreMerges ?? false,
            normalizesNFC: normalizesNFC)
    }

    /// The chat template of `folder`: `chat_template.jinja`, else tokenizer_config.json's `chat_template`
    /// (a string, or a list of named templates of which "default" is taken).
    public static func chatTemplate(folder: String) throws -> ChatTemplate {
        let file = folder + "/" + chatTemplateFile
        if JSONFile.exists(file) {
            return try ChatTemplate(jinja: String(decoding: MappedFile(path: file).bytes, as: UTF8.self))
        }
        return try ChatTemplate(jinja: tokenizerConfig(folder: folder).chatTemplate?.text)
    }

    /// tokenizer_config.json, or empty settings when the folder has none.
    private static func tokenizerConfig(folder: String) throws -> TokenizerConfigJSON {
        let path = folder + "/" + configFile
        guard JSONFile.exists(path) else { return TokenizerConfigJSON() }
        return try JSONFile.decode(TokenizerConfigJSON.self, path: path, role: "tokenizer settings")
    }

    /// Which of our pre-tokenizers the tokenizer.json `pre_tokenizer` is.
    private static func preTokenizer(_ json: TokenizerJSON.Component?, unsupported: (String) -> ModelError) throws -> PreTokenizer {
        let supported = "supported: ByteLevel, Digits(individual) + ByteLevel, Split(Llama 3 or Qwen2 regex) + ByteLevel"
        guard let json else { throw unsupported("no pre_tokenizer; \(supported)") }
        func isByteLevel(_ c: TokenizerJSON.Component, regex: Bool) -> Bool {
            c.type == "ByteLevel" && c.addPrefixSpace != true && (c.useRegex ?? true) == regex
        }
        if isByteLevel(json, regex: true) { return .gpt2 }
        if json.type == "Sequence", let steps = json.pretokenizers, steps.count == 2 {
            if steps[0].type == "Digits", steps[0].individualDigits == true, isByteLevel(steps[1], regex: true) { return .smolLM }
            if steps[0].type == "Split", let regex = steps[0].pattern?.regex, let split = PreTokenizer.splitPatterns[regex],
               steps[0].behavior ?? "Isolated" == "Isolated", isByteLevel(steps[1], regex: false) {
                return split
            }
        }
        throw unsupported("pre_tokenizer \(json.summary); \(supported)")
    }

    /// Whether a TemplateProcessing post-processor (possibly inside a Sequence) puts `bos` first.
    private static func startsWithSpecialToken(_ processor: TokenizerJSON.Component, _ bos: String?) -> Bool {
        if let first = processor.single?.first { return first.specialToken?.id == bos && bos != nil }
        return processor.processors?.contains { startsWithSpecialToken($0, bos) } ?? false
    }
}

/// The parts of tokenizer.json we read.
struct TokenizerJSON: Decodable {
    var model: Model
    var addedTokens: [AddedToken]?
    var normalizer: Component?
    var preTokenizer: Component?
    var postProcessor: Component?
    var decoder: Component?

    enum CodingKeys: String, CodingKey {
        case model, addedTokens = "added_tokens", normalizer, preTokenizer = "pre_tokenizer"
        case postProcessor = "post_processor", decoder
    }

    struct Model: Decodable {
        var type: String?
        var vocab: [String: Int]?
        var merges: [Merge]?
        var byteFallback: Bool?
        var ignoreMerges: Bool?
        enum CodingKeys: String, CodingKey {
            case type, vocab, merges, byteFallback = "byte_fallback", ignoreMerges = "ignore_merges"
        }
    }

    /// A merge, written "left right" (older files) or ["left", "right"] (newer ones).
    struct Merge: Decodable {
        var line: String
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let line = try? container.decode(String.self) {
                self.line = line
            } else {
                self.line = try container.decode([String].self).joined(separator: " ")
            }
        }
    }

    struct AddedToken: Decodable {
        var id: Int
        var content: String
        var special: Bool
    }

    /// A normalizer, pre-tokenizer, post-processor or decoder: the fields of every kind we look at.
    struct Component: Decodable {
        var type: String?
        var pretokenizers: [Component]?
        var processors: [Component]?
        var pattern: Pattern?
        var behavior: String?
        var individualDigits: Bool?
        var useRegex: Bool?
        var addPrefixSpace: Bool?
        var single: [TemplatePiece]?

        enum CodingKeys: String, CodingKey {
            case type, pretokenizers, processors, pattern, behavior, individualDigits = "individual_digits"
            case useRegex = "use_regex", addPrefixSpace = "add_prefix_space", single
        }

        /// "Sequence[Split, ByteLevel]" for error messages.
        var summary: String {
            let inner = (pretokenizers ?? []).map(\.summary).joined(separator: ", ")
            return (type ?? "?") + (pretokenizers == nil ? "" : "[\(inner)]")
        }
    }

    struct Pattern: Decodable {
        var regex: String?
        enum CodingKeys: String, CodingKey { case regex = "Regex" }
    }

    struct TemplatePiece: Decodable {
        struct Special: Decodable { var id: String }
        var specialToken: Special?
        enum CodingKeys: String, CodingKey { case specialToken = "SpecialToken" }
    }
}

/// The parts of tokenizer_config.json we read.
struct TokenizerConfigJSON: Decodable {
    var addBosToken: Bool?
    var bosToken: TokenText?
    var eosToken: TokenText?
    var chatTemplate: ChatTemplateText?

    init() {}

    enum CodingKeys: String, CodingKey {
        case addBosToken = "add_bos_token", bosToken = "bos_token", eosToken = "eos_token", chatTemplate = "chat_template"
    }

    /// A special token written as "<s>" or as {"content": "<s>", ...}.
    struct TokenText: Decodable {
        var content: String
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                content = text
            } else {
                content = try container.decode(Object.self).content
            }
        }
        private struct Object: Decodable { var content: String }
    }

    /// A chat template: one string, or a list of {"name", "template"} of which "default" is used.
    struct ChatTemplateText: Decodable {
        var text: String?
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self.text = text
            } else {
                let named = try container.decode([Named].self)
                text = (named.first { $0.name == "default" } ?? named.first)?.template
            }
        }
        private struct Named: Decodable { var name: String; var template: String }
    }
}
