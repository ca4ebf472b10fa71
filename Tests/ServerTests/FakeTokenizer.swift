import Model

/// A byte-level tokenizer for the fake engine: ids 0-2 are the control tokens `<s>`, `<|im_start|>`
/// and `<|im_end|>` (also EOS), ids 3...258 are the bytes 0...255, and ids up to 1023 are filler
/// words ("w<id>") so that token-id prompts have room.
struct FakeTokenizer: Tokenizer {
    static let controls = ["<s>", "<|im_start|>", "<|im_end|>"]
    static let firstByteID: Int32 = 3

    var vocabularySize: Int { 1024 }
    var bosTokenID: Int32? { 0 }
    var eosTokenID: Int32? { 2 }
    var addsBOS: Bool { false }

    func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) -> [Int32] {
        var ids: [Int32] = addBOS ? [0] : []
        var rest = Substring(text)
        while !rest.isEmpty {
            if parseSpecial, let (index, control) = Self.controls.enumerated().first(where: { rest.hasPrefix($0.element) }) {
                ids.append(Int32(index))
                rest = rest.dropFirst(control.count)
            } else {
                let character = rest.removeFirst()
                ids += character.utf8.map { Int32($0) + Self.firstByteID }
            }
        }
        return ids
    }

    func appendBytes(of id: Int32, atStart: Bool, to bytes: inout [UInt8]) {
        switch id {
        case 0..<Self.firstByteID: bytes += Array(Self.controls[Int(id)].utf8)
        case Self.firstByteID..<(Self.firstByteID + 256): bytes.append(UInt8(id - Self.firstByteID))
        case (Self.firstByteID + 256)..<Int32(vocabularySize): bytes += Array("w\(id)".utf8)
        default: break
        }
    }

    func isControl(_ id: Int32) -> Bool { (0..<Self.firstByteID).contains(id) }

    func tokenID(for text: String) -> Int32? {
        Self.controls.firstIndex(of: text).map { Int32($0) }
    }

    /// The id of an ASCII character's byte.
    static func id(of byte: UInt8) -> Int32 { Int32(byte) + firstByteID }
}
