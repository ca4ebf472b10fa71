/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    public enum Role: String, Sendable {
        case system, user, assistant
    }

    public var role: Role
    public var content: String

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }
}

/// The prompt formats we render natively, in place of a Jinja engine. Each renders exactly what the
/// model's own Jinja template (`tokenizer.chat_template`) renders for system/user/assistant messages.
/// `render` gives the text with special tokens spelled out; `encode` gives the token ids, taking
/// control tokens from the template only.
public enum ChatTemplate: Sendable, Equatable {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen). `defaultSystemPrompt` is inserted
    /// first when the conversation has no system message, as SmolLM2's template does.
    case chatML(defaultSystemPrompt: String?)
    /// `<s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant </s>` (Llama 2 chat).
    case llama2
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` (Llama 3 instruct).
    case llama3
    /// `<s>[INST] user [/INST]assistant</s>` (Mistral instruct); a system message is put before the
    /// first user message.
    case mistral

    /// Names accepted by `init(name:)`.
    public static let supportedNames = ["chatml", "llama2", "llama3", "mistral"]

    /// The template named by the CLI or a config ("chatml", "llama2", "llama3", "mistral").
    public init(name: String) throws {
        switch name.lowercased() {
        case "chatml": self = .chatML(defaultSystemPrompt: nil)
        case "llama2": self = .llama2
        case "llama3": self = .llama3
        case "mistral": self = .mistral
        default: throw ModelError.unknownChatTemplate(excerpt: name, supported: Self.supportedNames)
        }
    }

    /// The template of a GGUF file, recognized from its `tokenizer.chat_template` text.
    public init(gguf: GGUFFile) throws {
        try self.init(jinja: gguf.string("tokenizer.chat_template"))
    }

    /// Recognizes a Jinja chat template by the markers only its format uses.
    public init(jinja template: String?) throws {
        guard let template else { throw ModelError.unknownChatTemplate(excerpt: nil, supported: Self.supportedNames) }
        if template.contains("<|im_start|>") {
            self = .chatML(defaultSystemPrompt: Self.defaultSystemPrompt(inChatML: template))
        } else if template.contains("<|start_header_id|>") {
            self = .llama3
        } else if template.contains("[INST]") {
            self = template.contains("<<SYS>>") ? .llama2 : .mistral
        } else {
            throw ModelError.unknownChatTemplate(excerpt: String(template.prefix(80)), supported: Self.supportedNames)
        }
    }

    public var name: String {
        switch self {
        case .chatML: "chatml"
        case .llama2: "llama2"
        case .llama3: "llama3"
        case .mistral: "mistral"
        }
    }

    /// The special token that ends an assistant turn: generation stops there.
    public var endOfTurn: String {
        switch self {
        case .chatML: "<|im_end|>"
        case .llama2, .mistral: "</s>"
        case .llama3: "<|eot_id|>"
        }
    }

    /// The prompt for `messages`; with `addGenerationPrompt` it ends where the assistant's reply begins
    /// (Llama 2 and Mistral prompts always end there after a user message).
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws -> String {
        try renderPieces(messages, addGenerationPrompt: addGenerationPrompt).text
    }

    /// The prompt's token ids. Control tokens come only from the template: a message whose content
    /// spells one (`<|im_end|>`, `<|eot_id|>`, `</s>`) gets it as plain text, so a user cannot end
    /// a turn or forge a role. When no content does, this is exactly the rendered text encoded
    /// with special tokens (Hugging Face's result); otherwise template and contents are encoded
    /// separately.
    public func encode(_ messages: [ChatMessage], tokenizer: any Tokenizer, addGenerationPrompt: Bool = true) throws -> [Int32] {
        let rendered = try renderPieces(messages, addGenerationPrompt: addGenerationPrompt)
        let spellsControlToken = rendered.pieces.contains { piece in
            piece.isContent && tokenizer.encode(piece.text, addBOS: false, parseSpecial: true)
                != tokenizer.encode(piece.text, addBOS: false, parseSpecial: false)
        }
        guard spellsControlToken else { return tokenizer.encode(rendered.text, addBOS: false, parseSpecial: true) }
        return rendered.pieces.flatMap { tokenizer.encode($0.text, addBOS: false, parseSpecial: !$0.isContent) }
    }

    /// A rendered prompt as template text and message contents, in order.
    struct Rendered {
        var pieces: [(text: String, isContent: Bool)] = []
        var text: String { pieces.map(\.text).joined() }
        mutating func template(_ text: String) {
            if let last = pieces.last, !last.isContent { pieces[pieces.count - 1].text += text } else { pieces.append((text, false)) }
        }
        mutating func content(_ text: String) { if !text.isEmpty { pieces.append((text, true)) } }
    }

    func renderPieces(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> Rendered {
        var out = Rendered()
        switch self {
        case let .chatML(defaultSystemPrompt):
            if let first = messages.first, first.role != .system, let defaultSystemPrompt {
                out.template("<|im_start|>system\n\(defaultSystemPrompt)<|im_end|>\n")
            }
            for message in messages {
                out.template("<|im_start|>\(message.role.rawValue)\n")
                out.content(message.content)
                out.template("<|im_end|>\n")
            }
            if addGenerationPrompt { out.template("<|im_start|>assistant\n") }

        case .llama3:
            out.template("<|begin_of_text|>")
            for message in messages {
                out.template("<|start_header_id|>\(message.role.rawValue)<|end_header_id|>\n\n")
                out.content(Self.strip(message.content))
                out.template("<|eot_id|>")
            }
            if addGenerationPrompt { out.template("<|start_header_id|>assistant<|end_header_id|>\n\n") }

        case .llama2:
            let (system, turns) = try Self.alternatingTurns(messages)
            for (i, message) in turns.enumerated() {
                let isUser = message.role == .user
                out.template(isUser ? "<s>[INST] " : " ")
                if i == 0, let system {
                    // Python's strip() of "<<SYS>>\n" + system + ... + content: the template's own
                    // text starts and ends the stripped string, so only the content's ends move.
                    let content = Self.stripEnd(message.content)
                    out.template("<<SYS>>\n")
                    out.content(system)
                    out.template(content.isEmpty ? "\n<</SYS>>" : "\n<</SYS>>\n\n")
                    out.content(content)
                } else {
                    out.content(Self.strip(message.content))
                }
                out.template(isUser ? " [/INST]" : " </s>")
            }

        case .mistral:
            let (system, turns) = try Self.alternatingTurns(messages)
            out.template("<s>")
            for (i, message) in turns.enumerated() {
                if message.role == .user {
                    out.template("[INST] ")
                    if i == 0, let system {
                        out.content(system)
                        out.template("\n\n")
                    }
                    out.content(message.content)
                    out.template(" [/INST]")
                } else {
                    out.content(message.content)
                    out.template("</s>")
                }
            }
        }
        return out
    }

    /// An optional leading system message and the rest, which must go user, assistant, user, ...
    private static func alternatingTurns(_ messages: [ChatMessage]) throws -> (system: String?, turns: ArraySlice<ChatMessage>) {
        var turns = messages[...]
        var system: String?
        if let first = turns.first, first.role == .system {
            system = first.content
            turns = turns.dropFirst()
        }
        for (i, message) in turns.enumerated() where message.role != (i % 2 == 0 ? .user : .assistant) {
            throw ModelError.invalidConversation(
                "message \(i + (system == nil ? 0 : 1)) is '\(message.role.rawValue)': after an optional system message, roles must alternate user/assistant/user/...")
        }
        return (system, turns)
    }

    /// Python's `str.strip()`, which the Llama templates apply to contents.
    private static func strip(_ text: String) -> String {
        var scalars = text.unicodeScalars[...]
        while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() }
        return stripEnd(String(String.UnicodeScalarView(scalars)))
    }

    /// Python's `str.rstrip()`.
    private static func stripEnd(_ text: String) -> String {
        var scalars = text.unicodeScalars[...]
        while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
        return String(String.UnicodeScalarView(scalars))
    }

    /// The system prompt a ChatML template inserts when there is none, e.g. SmolLM2's
    /// `'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>\n'`: the literal
    /// text between "<|im_start|>system" + newline and "<|im_end|>", when it contains no template code.
    static func defaultSystemPrompt(inChatML template: String) -> String? {
        guard template.contains("!= 'system'") || template.contains("!= \"system\"") else { return nil }
        for newline in ["\n", "\\n"] {
            let opening = "<|im_start|>system" + newline
            guard let start = template.firstRange(of: opening)?.upperBound,
                  let end = template[start...].firstRange(of: "<|im_end|>")?.lowerBound else { continue }
            let text = template[start..<end]
            guard !text.contains(where: { "'\"{}+".contains($0) }) else { continue }
            return String(text.replacing("\\n", with: "\n"))
        }
        return nil
    }
}
