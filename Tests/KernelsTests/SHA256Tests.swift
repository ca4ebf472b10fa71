import Kernels
import Testing

@Suite struct SHA256Tests {
    /// FIPS 180-4 test vectors, including the two-block message.
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func knownVectors(message: String, digest: String) {
        #expect(SHA256.hex(message) == digest)
    }

    @Test func millionAs() {
        var hasher = SHA256()
        hasher.update([UInt8](repeating: 0x61, count: 1_000_000))
        #expect(hasher.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func chunkingDoesNotMatter() {
        let text = String(repeating: "comet W4AxKV4 ", count: 50)
        var hasher = SHA256()
        for chunk in text.utf8.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false).enumerated() {
            if chunk.offset > 0 { hasher.update([UInt8(ascii: " ")]) }
            hasher.update(chunk.element)
        }
        #expect(hasher.finalizeHex() == SHA256.hex(text))
    }
}
