import ArgumentParser
import Model

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the text of token ids (as arguments, or one JSON array such as \"[504, 3575]\").")

    @Argument(help: "Token ids.")
    var ids: [String]

    @OptionGroup var modelOptions: ModelOptions

    func run() throws {
        // Accept `1 2 3`, `[1, 2, 3]` and `1,2,3` alike: the output of `comet tokenize` pastes back in.
        let separators: Set<Character> = ["[", "]", ",", " ", "\n", "\t"]
        let fields = ids.joined(separator: " ").split(whereSeparator: { separators.contains($0) })
        var parsed: [Int32] = []
        for field in fields {
            guard let id = Int32(field) else { throw fail("'\(field)' is not a token id") }
            parsed.append(id)
        }
        let source = try modelOptions.open()
        let tokenizer = try modelOptions.tokenizer(source)
        if let bad = parsed.first(where: { $0 < 0 || Int($0) >= tokenizer.vocabularySize }) {
            throw fail("token id \(bad) is outside the vocabulary (0..<\(tokenizer.vocabularySize))")
        }
        print(tokenizer.decode(parsed))
    }
}
