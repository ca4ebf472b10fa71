import Foundation
@testable import Model
import Testing

/// Tokenizer parts that need no model file: the pre-tokenizer patterns against HF `tokenizers`, and
/// the SentencePiece tokenizer (Mistral v1 vocab) against the `sentencepiece` package.
@Suite struct TokenizerTests {
    struct PreTokenizerCase: Decodable {
        var text: String
        var pieces: [String]
    }

    @Test(arguments: PreTokenizer.allCases)
    func preTokenizerMatchesTheRegex(_ pre: PreTokenizer) throws {
        let golden = try Fixtures.load("pretokenizer.json", as: [String: [PreTokenizerCase]].self)
        let cases = try #require(golden[pre.rawValue])
        #expect(cases.count > 400)
        var mismatches = 0
        for c in cases where pre.split(c.text) != c.pieces {
            mismatches += 1
            if mismatches <= 10 { Issue.record("\(pre) \(c.text.debugDescription): \(pre.split(c.text)) != \(c.pieces)") }
        }
        #expect(mismatches == 0)
    }

    @Test func preTokenizerExamples() throws {
        #expect(PreTokenizer.gpt2.split("Hello  world's 123!!") == ["Hello", " ", " world", "'s", " 123", "!!"])
        #expect(PreTokenizer.smolLM.split("Hello  world's 123!!") == ["Hello", " ", " world", "'s", " ", "1", "2", "3", "!!"])
        #expect(PreTokenizer.llama3.split("Hello  WORLD'S 12345!!\n\n") == ["Hello", " ", " WORLD", "'S", " ", "123", "45", "!!\n\n"])
        #expect(PreTokenizer.qwen2.split("Hello  WORLD'S 12345!!\n\n") == ["Hello", " ", " WORLD", "'S", " ", "1", "2", "3", "4", "5", "!!\n\n"])
        #expect(try PreTokenizer(ggufName: "qwen2") == .qwen2)
        #expect(throws: ModelError.self) { try PreTokenizer(ggufName: "deepseek-llm") }
        #expect(try PreTokenizer(ggufName: "smollm") == .smolLM)
    }

    // MARK: - SentencePiece

    struct SentencePieceVocab: Decodable {
        var tokens: [String]
        var scores: [Float]
        var types: [Int32]
        var bos: Int
        var eos: Int
        var unk: Int
    }

    static let mistral: SentencePieceTokenizer? = {
        guard let vocab = try? Fixtures.load("mistral_v1_vocab.json", as: SentencePieceVocab.self) else { return nil }
        return try? SentencePieceTokenizer(
            tokens: vocab.tokens, scores: vocab.scores, types: vocab.types.map { TokenType(rawValue: $0)! },
            bosTokenID: vocab.bos, eosTokenID: vocab.eos, unknownTokenID: vocab.unk)
    }()

    @Test func sentencePieceMatchesTheSentencePiecePackage() throws {
        let tokenizer = try #require(Self.mistral)
        #expect(tokenizer.vocabularySize == 32000)
        let golden = try Fixtures.load("mistral_v1_tokenizer.json", as: Fixtures.TokenizerCases.self)
        #expect(golden.cases.count >= 1000)
        var mismatches = 0
        for c in golden.cases {
            // sentencepiece never parses control tokens in text.
            let ids = tokenizer.encode(c.text, addBOS: false, parseSpecial: false)
            if ids != c.ids {
                mismatches += 1
                if mismatches <= 10 { Issue.record("encode(\(c.text.debugDescription)) = \(ids), sentencepiece: \(c.ids)") }
            }
            #expect(tokenizer.decode(c.ids) == c.decoded, "decode of \(c.text.debugDescription)")
            #expect(tokenizer.decode(c.ids) == c.text, "round trip of \(c.text.debugDescription)")
        }
        #expect(mismatches == 0, "\(mismatches) of \(golden.cases.count) strings tokenize differently")
    }

    @Test func sentencePieceSpecialTokensAndBOS() throws {
        let tokenizer = try #require(Self.mistral)
        #expect(tokenizer.encode("Hi", addBOS: true).first == 1)
        #expect(tokenizer.addsBOS)
        // With parseSpecial, "<s>" is BOS and the text after it gets its own '▁' prefix (llama.cpp's rule).
        let ids = tokenizer.encode("<s>[INST] Hi [/INST]", addBOS: false, parseSpecial: true)
        #expect(ids.first == 1)
        #expect(Array(ids.dropFirst()) == tokenizer.encode("[INST] Hi [/INST]", addBOS: false, parseSpecial: false))
        #expect(tokenizer.decode(ids) == "<s>[INST] Hi [/INST]")
        #expect(tokenizer.decode([1, 1318]) == "<s>x")  // '▁x': the first text piece loses its space
    }

    @Test func sentencePieceLoadsFromGGUFMetadata() throws {
        let vocab = try Fixtures.load("mistral_v1_vocab.json", as: SentencePieceVocab.self)
        var writer = GGUFWriter()
        writer.add("general.architecture", .string("llama"))
        writer.add("tokenizer.ggml.model", .string("llama"))
        writer.add("tokenizer.ggml.tokens", .array(vocab.tokens.map { .string($0) }))
        writer.add("tokenizer.ggml.scores", .array(vocab.scores.map { .float32($0) }))
        writer.add("tokenizer.ggml.token_type", .array(vocab.types.map { .int32($0) }))
        writer.add("tokenizer.ggml.bos_token_id", .uint32(1))
        writer.add("tokenizer.ggml.eos_token_id", .uint32(2))
        writer.add("tokenizer.ggml.unknown_token_id", .uint32(0))
        writer.add("tokenizer.ggml.add_bos_token", .bool(true))
        let tokenizer = try makeTokenizer(gguf: openGGUF(writer.bytes().bytes))
        #expect(tokenizer is SentencePieceTokenizer)
        let golden = try Fixtures.load("mistral_v1_tokenizer.json", as: Fixtures.TokenizerCases.self)
        for c in golden.cases.prefix(200) {
            #expect(tokenizer.encode(c.text, addBOS: false, parseSpecial: false) == c.ids)
        }
    }

    @Test func unsupportedTokenizerModelIsAnError() throws {
        var writer = GGUFWriter()
        writer.add("tokenizer.ggml.model", .string("bert"))
        let gguf = try openGGUF(writer.bytes().bytes)
        expectModelError({ _ = try makeTokenizer(gguf: gguf) }) { $0.description.contains("gpt2, llama") }
        var noModel = GGUFWriter()
        noModel.add("general.architecture", .string("llama"))
        expectModelError({ _ = try makeTokenizer(gguf: openGGUF(noModel.bytes().bytes)) }) {
            $0 == .missingMetadata(key: "tokenizer.ggml.model")
        }
    }

    // MARK: - Streaming

    @Test func streamingHoldsBackSplitCharacters() throws {
        let tokenizer = try #require(Self.mistral)
        // These fall back to byte tokens: each character is 3-4 tokens of one byte.
        let text = "🥲 a 𝔘𝔫 b 🦀x"
        let ids = tokenizer.encode(text, addBOS: true, parseSpecial: false)
        #expect(ids.count > text.unicodeScalars.count, "expected byte-fallback tokens")
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        var pieces: [String] = []
        for id in ids { pieces.append(stream.append(id)) }
        pieces.append(stream.finish())
        #expect(pieces.joined() == "<s>" + text)
        #expect(pieces.joined() == tokenizer.decode(ids))
        #expect(!pieces.joined().unicodeScalars.contains("\u{FFFD}"))
        #expect(pieces.filter(\.isEmpty).count >= 6, "bytes of split characters must be held back")
        #expect(pieces.contains("🥲") || pieces.contains(" 🥲") || pieces.contains("<s>🥲"))
    }

    @Test func streamingOverAllGoldenStrings() throws {
        let tokenizer = try #require(Self.mistral)
        let golden = try Fixtures.load("mistral_v1_tokenizer.json", as: Fixtures.TokenizerCases.self)
        for c in golden.cases {
            var stream = StreamingDetokenizer(tokenizer: tokenizer)
            var pieces = c.ids.map { stream.append($0) }
            pieces.append(stream.finish())
            #expect(pieces.joined() == c.text)
            #expect(!pieces.contains { $0.unicodeScalars.contains("\u{FFFD}") })
        }
    }

    @Test func incompleteUTF8Suffixes() {
        let cut = StreamingDetokenizer.incompleteSuffixLength
        #expect(cut([]) == 0)
        #expect(cut(Array("abc".utf8)) == 0)
        #expect(cut(Array("é".utf8)) == 0)
        #expect(cut([0xC3]) == 1)
        #expect(cut([0x61, 0xE2, 0x82]) == 2)         // "€" missing its last byte
        #expect(cut([0xF0, 0x9F, 0x98]) == 3)         // an emoji missing one byte
        #expect(cut(Array("😀".utf8)) == 0)
        #expect(cut([0x80]) == 0)                     // a lone continuation byte is invalid, not incomplete
        #expect(cut([0xE0, 0x80]) == 0)               // overlong: can never complete
        #expect(cut([0xED, 0xA0]) == 0)               // surrogate
        #expect(cut([0xF4, 0x90]) == 0)               // above U+10FFFF
        #expect(cut([0xFF]) == 0)
        // An invalid byte is emitted (as U+FFFD) rather than held forever.
        let tokenizer = Self.mistral!
        var stream = StreamingDetokenizer(tokenizer: tokenizer)
        let ff = tokenizer.tokenID(for: "<0xFF>")!
        #expect(stream.append(ff) == "\u{FFFD}")
        let e2 = tokenizer.tokenID(for: "<0xE2>")!
        #expect(stream.append(e2) == "")
        #expect(stream.finish() == "\u{FFFD}")
    }
}
