import Foundation
@testable import Model
import Testing

/// tokenizer.json / tokenizer_config.json loading. The real one is SmolLM2's, written by
/// scripts/make_hf_fixture.py with HF `tokenizers`; its ids must equal the `tokenizers` oracle's on the
/// 1,200 strings of smollm2_tokenizer.json. Variants of it check the Llama 3 and Qwen2 rules.
@Suite struct HuggingFaceTokenizerTests {
    static let folder: String? = {
        let path = ProcessInfo.processInfo.environment["COMET_TEST_HF"] ?? TestAssets.folder + "/smollm2-hf"
        if FileManager.default.fileExists(atPath: path + "/tokenizer.json") { return path }
        return ProcessInfo.processInfo.environment["COMET_REQUIRE_ASSETS"] == "1" ? path : nil
    }()
    static let missing: Comment = "SmolLM2 HF folder not found (run scripts/make_hf_fixture.py)"

    static let config = ModelConfig(vocabularySize: 49152, dim: 64, layerCount: 1, headCount: 1, kvHeadCount: 1,
                                    headDim: 64, ffnDim: 64, ropeBase: 10_000, contextLength: 64, bosTokenID: 1, eosTokenID: 2)

    /// Writes `json` as tokenizer.json into a new folder (plus tokenizer_config.json when given).
    static func folder(tokenizer json: [String: Any], settings: [String: Any]? = nil) throws -> String {
        let folder = temporaryPath("tokenizer")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: folder + "/tokenizer.json"))
        if let settings {
            try JSONSerialization.data(withJSONObject: settings).write(to: URL(fileURLWithPath: folder + "/tokenizer_config.json"))
        }
        return folder
    }

    /// The real tokenizer.json as a JSON object, to edit.
    static func realTokenizerJSON() throws -> [String: Any] {
        let path = try #require(folder) + "/tokenizer.json"
        return try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }

    static func splitThenByteLevel(_ pattern: String) -> [String: Any] {
        ["type": "Sequence", "pretokenizers": [
            ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false],
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
        ]]
    }

    @Test(.enabled(if: folder != nil, missing))
    func smolLM2TokenizerJSONMatchesTheOracle() throws {
        let tokenizer = try HuggingFaceTokenizer.load(folder: #require(Self.folder), config: Self.config)
        #expect(tokenizer.preTokenizer == .smolLM)
        #expect(tokenizer.vocabularySize == 49152 && !tokenizer.addsBOS)
        let golden = try Fixtures.load("smollm2_tokenizer.json", as: Fixtures.TokenizerCases.self)
        #expect(golden.cases.count >= 1000)
        var mismatches = 0
        for c in golden.cases {
            let ids = tokenizer.encode(c.text, addBOS: false, parseSpecial: true)
            if ids != c.ids {
                mismatches += 1
                if mismatches <= 5 { Issue.record("\(c.text.debugDescription): \(ids) != \(c.ids)") }
            }
            #expect(tokenizer.decode(ids) == c.text)
        }
        #expect(mismatches == 0)
    }

    /// The same vocab with Llama 3's Split regex and ignore_merges, as a Llama 3 tokenizer.json says
    /// them, against `tokenizers` with those rules (smollm2_vocab_llama3_rules.json).
    @Test(.enabled(if: folder != nil, missing))
    func llama3RulesFromTokenizerJSON() throws {
        var json = try Self.realTokenizerJSON()
        json["pre_tokenizer"] = Self.splitThenByteLevel(PreTokenizer.splitPatterns.first { $0.value == .llama3 }!.key)
        var model = json["model"] as! [String: Any]
        model["ignore_merges"] = true
        json["model"] = model
        let folder = try Self.folder(tokenizer: json)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let tokenizer = try HuggingFaceTokenizer.load(folder: folder, config: Self.config)
        #expect(tokenizer.preTokenizer == .llama3)
        let golden = try Fixtures.load("smollm2_vocab_llama3_rules.json", as: Fixtures.TokenizerCases.self)
        let mismatches = golden.cases.filter { tokenizer.encode($0.text, addBOS: false, parseSpecial: true) != $0.ids }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(3).map(\.text))")
    }

    /// Qwen2's regex (single digits) and NFC normalizer are recognized and applied.
    @Test(.enabled(if: folder != nil, missing))
    func qwen2RulesFromTokenizerJSON() throws {
        var json = try Self.realTokenizerJSON()
        json["pre_tokenizer"] = Self.splitThenByteLevel(PreTokenizer.splitPatterns.first { $0.value == .qwen2 }!.key)
        json["normalizer"] = ["type": "NFC"]
        let folder = try Self.folder(tokenizer: json, settings: ["add_bos_token": true, "bos_token": ["content": "<|im_start|>"]])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let tokenizer = try HuggingFaceTokenizer.load(folder: folder, config: Self.config)
        #expect(tokenizer.preTokenizer == .qwen2 && tokenizer.normalizesNFC)
        #expect(PreTokenizer.qwen2.split("abc 12345") == ["abc", " ", "1", "2", "3", "4", "5"])
        #expect(tokenizer.encode("caf\u{65}\u{301}") == tokenizer.encode("caf\u{e9}"))
        #expect(tokenizer.addsBOS && tokenizer.bosTokenID == 1)
    }

    /// A small byte-level tokenizer.json (the 256 byte tokens, one merge) for the error cases.
    static func tinyTokenizerJSON() -> [String: Any] {
        var vocab: [String: Int] = [:]
        for (byte, scalar) in ByteLevelAlphabet.characterForByte.enumerated() { vocab[String(scalar)] = byte }
        vocab["ab"] = 256
        return ["model": ["type": "BPE", "vocab": vocab, "merges": ["a b"], "byte_fallback": false],
                "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
                "decoder": ["type": "ByteLevel"],
                "added_tokens": [["id": 257, "content": "<eos>", "special": true]]]
    }

    @Test func tinyTokenizerWithStringMergesAndAddedTokens() throws {
        let folder = try Self.folder(tokenizer: Self.tinyTokenizerJSON(), settings: ["eos_token": "<eos>", "chat_template": "<|im_start|>"])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let tokenizer = try HuggingFaceTokenizer.load(folder: folder, config: Self.config)
        #expect(tokenizer.preTokenizer == .gpt2)
        #expect(tokenizer.encode("abc<eos>") == [256, 99, 257])
        #expect(tokenizer.eosTokenID == 257 && tokenizer.isControl(257))
        #expect(try HuggingFaceTokenizer.chatTemplate(folder: folder).name == "chatml")
    }

    @Test func unsupportedTokenizersAreRefusedClearly() throws {
        let edits: [(String, ([String: Any]) -> [String: Any])] = [
            ("byte_fallback", { var j = $0; var m = j["model"] as! [String: Any]; m["byte_fallback"] = true; j["model"] = m; return j }),
            ("WordPiece", { var j = $0; var m = j["model"] as! [String: Any]; m["type"] = "WordPiece"; j["model"] = m; return j }),
            ("Metaspace", { var j = $0; j["pre_tokenizer"] = ["type": "Metaspace"]; return j }),
            ("normalizer 'Lowercase'", { var j = $0; j["normalizer"] = ["type": "Lowercase"]; return j }),
            ("decoder 'Metaspace'", { var j = $0; j["decoder"] = ["type": "Metaspace"]; return j }),
        ]
        for (fragment, edit) in edits {
            let folder = try Self.folder(tokenizer: edit(Self.tinyTokenizerJSON()))
            defer { try? FileManager.default.removeItem(atPath: folder) }
            expectModelError({ _ = try HuggingFaceTokenizer.load(folder: folder, config: Self.config) }) { error in
                guard case .unsupportedTokenizer = error else { return false }
                return error.description.contains(fragment) && error.description.contains("supported")
            }
        }
        let empty = temporaryPath("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: empty) }
        expectModelError({ _ = try HuggingFaceTokenizer.load(folder: empty, config: Self.config) }) {
            if case let .missingFile(path, _) = $0 { path.hasSuffix("tokenizer.json") } else { false }
        }
        expectModelError({ _ = try HuggingFaceTokenizer.chatTemplate(folder: empty) }) {
            if case .unknownChatTemplate(nil, _) = $0 { true } else { false }
        }
    }
}
