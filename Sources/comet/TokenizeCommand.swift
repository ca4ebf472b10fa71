import ArgumentParser
import Model

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text as a JSON array.")

    @Argument(help: "The text.")
    var text: String

    @OptionGroup var modelOptions: ModelOptions

    @Flag(help: "Start with BOS (default: when the model asks for it, tokenizer.ggml.add_bos_token).")
    var bos = false

    @Flag(help: "Encode special tokens written in the text (e.g. <|im_end|>) as plain text.")
    var noSpecial = false

    func run() throws {
        let source = try modelOptions.open()
        let tokenizer = try modelOptions.tokenizer(source)
        let ids = tokenizer.encode(text, addBOS: bos || tokenizer.addsBOS, parseSpecial: !noSpecial)
        print("[" + ids.map(String.init).joined(separator: ", ") + "]")
    }
}
