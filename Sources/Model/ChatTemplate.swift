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
/// The result contains special tokens as text: encode it with `parseSpecial: true, addBOS: false`.
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
        switch self {
        case let .chatML(defaultSystemPrompt):
            var out = ""
            if let first = messages.first, first.role != .system, let defaultSystemPrompt {
                out += "<|im_start|>system\n\(defaultSystemPrompt)<|im_end|>\n"
            }
            for message in messages { out += "<|im_start|>\(message.role.rawValue)\n\(message.content)<|im_end|>\n" }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
            return out

        case .llama3:
            var out = "<|begin_of_text|>"
            for message in messages {
                out += "<|start_header_id|>\(message.role.rawValue)<|end_header_id|>\n\n\(Self.strip(message.content))<|eot_id|>"
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
            return out

        case .llama2:
            let (system, turns) = try Self.alternatingTurns(messages)
            var out = ""
            for (i, message) in turns.enumerated() {
                var content = message.content
                if i == 0, let system { content = "<<SYS>>\n\(system)\n<</SYS>>\n\n" + content }
                out += message.role == .user ? "<s>[INST] \(Self.strip(content)) [/INST]" : " \(Self.strip(content)) </s>"
            }
            return out

        case .mistral:
            let (system, turns) = try Self.alternatingTurns(messages)
            var out = "<s>"
            for (i, message) in turns.enumerated() {
                var content = message.content
                if i == 0, let system { content = system + "\n\n" + content }
                out += message.role == .user ? "[INST] \(content) [/INST]" : "\(content)</s>"
            }
            return out
        }
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
