@testable import Engine
import Model
import Testing

/// Streaming text with `FakeTokenizer`: ids 2... are "a"..., 28 " ", 29 "\n", 30 + 31 "é".
@Suite struct GeneratedTextStreamTests {
    static let a: Int32 = 2, b: Int32 = 3, c: Int32 = 4, space: Int32 = 28, newline: Int32 = 29

    /// Appends `ids`; returns the text each append released (one entry per token yielded) and
    /// whether a stop string was met.
    static func run(_ ids: [Int32], stops: [String], finish: Bool = true) -> (texts: [[String]], stopped: Bool) {
        var stream = GeneratedTextStream(tokenizer: FakeTokenizer(), prompt: [2], stopStrings: stops)
        var texts: [[String]] = []
        for id in ids {
            let (ready, stopped) = stream.append(GeneratedToken(token: id, text: ""))
            texts.append(ready.map(\.text))
            if stopped { return (texts, true) }
        }
        if finish { texts.append(stream.finish().map(\.text)) }
        return (texts, false)
    }

    @Test func withoutStopStringsEveryTokenComesOutAtOnce() {
        let (texts, stopped) = Self.run([Self.a, Self.space, Self.b], stops: [])
        #expect(texts == [["a"], [" "], ["b"], []])
        #expect(!stopped)
    }

    @Test func aSplitCharacterWaitsForItsSecondByte() {
        let (texts, _) = Self.run([Self.a, 30, 31, Self.b], stops: [])
        #expect(texts == [["a"], [], ["", "é"], ["b"], []])
    }

    @Test func anUnfinishedCharacterAtTheEndBecomesAReplacementCharacter() {
        let (texts, _) = Self.run([Self.a, 30], stops: [])
        #expect(texts == [["a"], [], ["\u{FFFD}"]])
    }

    @Test func textThatMayStartAStopStringIsHeldUntilItCannot() {
        // The stop is " x": " " is held until "c" shows that it does not begin one.
        let (texts, stopped) = Self.run([Self.a, Self.space, Self.c], stops: [" x"])
        #expect(texts == [["a"], [], ["", " c"], []])
        #expect(!stopped)
    }

    @Test func aStopStringSpanningTokensIsNeverYielded() {
        // "ab", " ", "c" + "\n": stop "b c" spans three tokens.
        let (texts, stopped) = Self.run([Self.a, Self.b, Self.space, Self.c, Self.newline], stops: ["b c"])
        #expect(stopped)
        #expect(texts == [["a"], [], [], ["", "", ""]])
    }

    @Test func theEarliestOfSeveralStopStringsWins() {
        let (texts, stopped) = Self.run([Self.a, Self.b, Self.c, Self.a], stops: ["ca", "bc"])
        #expect(stopped)
        #expect(texts.flatMap { $0 }.joined() == "a")
    }

    @Test func aStopStringInsideOneTokenCutsThatTokensText() {
        // Token 33 is "bb": the stop "b" ends the text before it; the token itself still comes out.
        let (texts, stopped) = Self.run([Self.a, 33, Self.c], stops: ["b"])
        #expect(stopped)
        #expect(texts == [["a"], [""]])
    }

    @Test func stopStringsMatchBytesNotCharacters() {
        // "\r\n" is one Character; the stop "\n" must still be found inside it.
        var stream = GeneratedTextStream(tokenizer: CRLFTokenizer(), prompt: [0], stopStrings: ["\n"])
        #expect(stream.append(GeneratedToken(token: 0, text: "")).stopped)
    }

    /// SentencePiece drops a leading space at the start of a text; a continuation is not a start.
    @Test func aContinuationKeepsItsLeadingSpace() {
        var afterText = GeneratedTextStream(tokenizer: LeadingSpaceTokenizer(), prompt: [1, 0], stopStrings: [])
        #expect(afterText.append(GeneratedToken(token: 0, text: "")).ready.map(\.text) == [" Paris"])
        var afterControl = GeneratedTextStream(tokenizer: LeadingSpaceTokenizer(), prompt: [1], stopStrings: [])
        #expect(afterControl.append(GeneratedToken(token: 0, text: "")).ready.map(\.text) == ["Paris"])
    }

    @Test func heldTextIsReleasedWhenGenerationEndsOtherwise() {
        let (texts, stopped) = Self.run([Self.a, Self.space], stops: [" x"])
        #expect(!stopped)
        #expect(texts == [["a"], [], [" "]])
    }
}

/// One token, "x\r\n".
struct CRLFTokenizer: Model.Tokenizer {
    var vocabularySize: Int { 1 }
    var bosTokenID: Int32? { nil }
    var eosTokenID: Int32? { nil }
    var addsBOS: Bool { false }
    func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) -> [Int32] { [0] }
    func appendBytes(of id: Int32, atStart: Bool, to bytes: inout [UInt8]) { bytes += Array("x\r\n".utf8) }
    func isControl(_ id: Int32) -> Bool { false }
    func tokenID(for text: String) -> Int32? { nil }
}

/// SentencePiece-like: token 0 is "▁Paris" (its space dropped at the start of a text), 1 is control `<s>`.
struct LeadingSpaceTokenizer: Model.Tokenizer {
    var vocabularySize: Int { 2 }
    var bosTokenID: Int32? { 1 }
    var eosTokenID: Int32? { nil }
    var addsBOS: Bool { true }
    func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) -> [Int32] { [0] }
    func appendBytes(of id: Int32, atStart: Bool, to bytes: inout [UInt8]) {
        if id == 0 { bytes += Array((atStart ? "Paris" : " Paris").utf8) }
    }
    func isControl(_ id: Int32) -> Bool { id == 1 }
    func tokenID(for text: String) -> Int32? { nil }
}
