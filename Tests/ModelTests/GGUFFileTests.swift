import Foundation
@testable import Model
import Testing

/// GGUF files written by the test itself: exact metadata and dequantization, and every kind of damage.
@Suite struct GGUFFileTests {
    @Test func metadataOfEveryTypeReadsBack() throws {
        var writer = GGUFWriter()
        let values: [(String, GGUFValue)] = [
            ("u8", .uint8(200)), ("i8", .int8(-100)), ("u16", .uint16(60000)), ("i16", .int16(-30000)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)), ("u64", .uint64(1 << 40)),
            ("i64", .int64(-(1 << 40))), ("f32", .float32(0.1)), ("f64", .float64(-2.5e-300)), ("bool", .bool(true)),
            ("string", .string("héllo 😀")), ("empty", .string("")),
            ("strings", .array([.string("a"), .string("<|im_start|>"), .string("Ġthe")])),
            ("ints", .array([.int32(1), .int32(-2), .int32(3)])),
            ("nested", .array([.array([.uint8(1), .uint8(2)]), .array([.uint8(3)])])),
        ]
        for (key, value) in values { writer.add(key, value) }
        let gguf = try openGGUF(writer.bytes().bytes)

        #expect(gguf.version == 3)
        #expect(gguf.tensors.isEmpty)
        for (key, value) in values { #expect(gguf.metadata[key] == value, "\(key)") }
        #expect(try gguf.int("u8") == 200)
        #expect(try gguf.int("i64") == -(1 << 40))
        #expect(try gguf.double("f32") == Double(Float(0.1)))
        #expect(try gguf.string("string") == "héllo 😀")
        #expect(try gguf.strings("strings") == ["a", "<|im_start|>", "Ġthe"])
        #expect(try gguf.ints("ints") == [1, -2, 3])
        #expect(try gguf.int("absent") == nil)
        #expect(throws: ModelError.wrongMetadataType(key: "string", expected: "integer")) { try gguf.int("string") }
        #expect(throws: ModelError.wrongMetadataType(key: "ints", expected: "array of strings")) { try gguf.strings("ints") }
    }

    @Test func dequantizesEveryTypeExactly() throws {
        var writer = GGUFWriter()
        writer.alignment = 64
        writer.add("general.alignment", .uint32(64))

        let f32: [Float] = [1.5, -2.25, 0, 3e-8, .greatestFiniteMagnitude]
        var bytes: [UInt8] = []
        for v in f32 { bytes.append(le: v.bitPattern) }
        writer.addTensor("f32", shape: [5], type: .f32, data: bytes)

        let f16: [Float] = [0.5, -1, 65504, 0x1p-14, 0x1p-24, 0.333251953125]  // max, min normal, min subnormal
        bytes = []
        for v in f16 { bytes.append(half: v) }
        writer.addTensor("f16", shape: [3, 2], type: .f16, data: bytes)

        // bf16 is the top half of a float32.
        bytes = []
        for bits: UInt16 in [0x3F80, 0xC020, 0x4049, 0x0000] { bytes.append(le: bits) }
        writer.addTensor("bf16", shape: [4], type: .bf16, data: bytes)

        // Q8_0, two blocks: d = 0.5 with q = j - 16; d = 2 with the extremes -128 and 127 first.
        bytes = []
        bytes.append(half: 0.5)
        for j in 0..<32 { bytes.append(UInt8(bitPattern: Int8(j - 16))) }
        bytes.append(half: 2)
        for q: Int8 in [-128, 127] + (2..<32).map({ Int8($0) }) { bytes.append(UInt8(bitPattern: q)) }
        writer.addTensor("q8_0", shape: [64], type: .q8_0, data: bytes)

        // Q4_0: byte j holds q = j (element j) low and q = 15 - j (element j + 16) high; x = d * (q - 8).
        bytes = []
        bytes.append(half: 0.25)
        for j in 0..<16 { bytes.append(UInt8(j) | UInt8(15 - j) << 4) }
        writer.addTensor("q4_0", shape: [32], type: .q4_0, data: bytes)

        // Q4_1, two rows of one block: x = d * q + m, same nibble layout.
        bytes = []
        for (d, m) in [(Float(0.5), Float(-3)), (Float(-0.125), Float(1))] {
            bytes.append(half: d)
            bytes.append(half: m)
            for j in 0..<16 { bytes.append(UInt8(j) | UInt8(15 - j) << 4) }
        }
        writer.addTensor("q4_1", shape: [32, 2], type: .q4_1, data: bytes)

        let gguf = try openGGUF(writer.bytes().bytes)
        #expect(gguf.alignment == 64)
        #expect(gguf.tensors.map(\.name) == ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"])
        #expect(gguf.tensors.allSatisfy { $0.offset % 64 == 0 })
        #expect(try gguf.dequantize(gguf.requireTensor("f32")) == f32)
        #expect(try gguf.dequantize(gguf.requireTensor("f16")) == f16)
        #expect(try gguf.dequantize(gguf.requireTensor("bf16")) == [1, -2.5, 3.140625, 0])
        var q80: [Float] = (0..<32).map { Float($0 - 16) * 0.5 }
        q80 += [-256, 254]
        q80 += (2..<32).map { Float($0) * 2 }
        #expect(try gguf.dequantize(gguf.requireTensor("q8_0")) == q80)
        // Element j < 16 has q = j, element 16 + j has q = 15 - j.
        var nibbles: [Int] = Array(0..<16)
        nibbles += (0..<16).map { 15 - $0 }
        let q: [Float] = nibbles.map { Float($0) }
        #expect(try gguf.dequantize(gguf.requireTensor("q4_0")) == q.map { ($0 - 8) * 0.25 })
        let q41 = try gguf.dequantize(gguf.requireTensor("q4_1"))
        #expect(Array(q41[0..<32]) == q.map { $0 * 0.5 - 3 })
        #expect(Array(q41[32..<64]) == q.map { $0 * -0.125 + 1 })
        #expect(try gguf.requireTensor("q4_1").byteCount == 40)
        #expect(gguf.data(of: try gguf.requireTensor("q4_0")).count == 18)
    }

    @Test func aQuantTypeWithoutDequantizationOpensButDoesNotDequantize() throws {
        var writer = GGUFWriter()
        writer.addTensor("k", shape: [256], type: .q4_K, data: [UInt8](repeating: 0, count: 144))
        let gguf = try openGGUF(writer.bytes().bytes)
        expectModelError({ _ = try gguf.dequantize(gguf.requireTensor("k")) }) {
            $0 == .unsupportedDequantization(type: .q4_K, tensor: "k") && $0.description.contains("Q4_1")
        }
        #expect(throws: ModelError.missingTensor("nope")) { try gguf.requireTensor("nope") }
    }

    // MARK: - Damaged files

    /// A small valid file: metadata (including an array) and two tensors.
    private func sampleFile() -> (bytes: [UInt8], dataStart: Int) {
        var writer = GGUFWriter()
        writer.add("general.architecture", .string("llama"))
        writer.add("tokenizer.ggml.tokens", .array([.string("a"), .string("b")]))
        writer.addTensor("a", shape: [8], type: .f32, data: [UInt8](repeating: 1, count: 32))
        writer.addTensor("b", shape: [32], type: .q4_1, data: [UInt8](repeating: 2, count: 20))
        return writer.bytes()
    }

    @Test func everyTruncationIsAnErrorNotACrash() throws {
        let (bytes, dataStart) = sampleFile()
        _ = try openGGUF(bytes)  // the whole file is fine
        for length in 0..<bytes.count {
            expectModelError({ _ = try openGGUF(Array(bytes[..<length])) }) { error in
                switch error {
                case .truncated: return length < dataStart
                // Cut in the padding or the data: the infos are complete but the data is not.
                case let .tensorDataOutOfBounds(_, _, fileSize): return fileSize == length
                default: return false
                }
            }
        }
    }

    @Test func badMagicAndVersionsAreRefused() {
        var bytes = sampleFile().bytes
        bytes[3] = UInt8(ascii: "X")
        expectModelError({ _ = try openGGUF(bytes) }) { $0 == .badMagic(found: Array("GGUX".utf8)) }
        expectModelError({ _ = try openGGUF(Array("PK\u{3}\u{4}".utf8) + [UInt8](repeating: 0, count: 64)) }) {
            if case .badMagic = $0 { return true } else { return false }
        }
        for version: UInt32 in [0, 1, 4, 0x0300_0000] {
            var writer = GGUFWriter()
            writer.version = version
            expectModelError({ _ = try openGGUF(writer.bytes().bytes) }) { error in
                error == .unsupportedVersion(version) && (version < 0xFFFF || error.description.contains("big-endian"))
            }
        }
        var v2 = GGUFWriter()
        v2.version = 2
        #expect(throws: Never.self) { try openGGUF(v2.bytes().bytes) }
    }

    @Test func unknownTensorTypeIsNamed() {
        var writer = GGUFWriter()
        writer.addTensor("weird", shape: [4], type: 99, data: [UInt8](repeating: 0, count: 16))
        expectModelError({ _ = try openGGUF(writer.bytes().bytes) }) {
            $0 == .unknownTensorType(id: 99, tensor: "weird") && $0.description.contains("99")
        }
    }

    @Test func tensorDataPastTheEndIsRefused() {
        var writer = GGUFWriter()
        writer.addTensor("ok", shape: [8], type: .f32, data: [UInt8](repeating: 0, count: 32))
        // Declares 64 floats (256 bytes) but the file holds only 32 bytes of it.
        writer.addTensor("short", shape: [64], type: .f32, data: [UInt8](repeating: 0, count: 32))
        expectModelError({ _ = try openGGUF(writer.bytes().bytes) }) { error in
            guard case let .tensorDataOutOfBounds(tensor, end, fileSize) = error else { return false }
            return tensor == "short" && end > fileSize
        }
    }

    @Test func impossibleCountsAndShapesAreRefusedWithoutAllocating() {
        // Header claiming 2^62 metadata entries.
        var bytes: [UInt8] = Array("GGUF".utf8)
        bytes.append(le: UInt32(3))
        bytes.append(le: UInt64(0))
        bytes.append(le: UInt64(1) << 62)
        expectModelError({ _ = try openGGUF(bytes) }) { if case .truncated = $0 { true } else { false } }

        // A string array of 2^40 elements, and a string of length 2^60.
        for header in [(UInt32(9), [UInt8]()), (UInt32(8), [UInt8]())] {
            var b: [UInt8] = Array("GGUF".utf8)
            b.append(le: UInt32(3))
            b.append(le: UInt64(0))
            b.append(le: UInt64(1))
            b.append(string: "key")
            b.append(le: header.0)
            if header.0 == 9 { b.append(le: UInt32(8)); b.append(le: UInt64(1) << 40) } else { b.append(le: UInt64(1) << 60) }
            b += [UInt8](repeating: 0, count: 32)
            expectModelError({ _ = try openGGUF(b) }) { if case .truncated = $0 { true } else { false } }
        }

        var writer = GGUFWriter()
        writer.add("x", .uint8(1))
        var b = writer.bytes().bytes
        b[24 + 8 + 1] = 77  // the value type of "x": after the header and the key
        expectModelError({ _ = try openGGUF(b) }) { $0.description.contains("unknown value type 77") }

        var fiveDims = GGUFWriter()
        fiveDims.addTensor("t", shape: [1, 1, 1, 1, 1], type: .f32, data: [0, 0, 0, 0])
        expectModelError({ _ = try openGGUF(fiveDims.bytes().bytes) }) { $0.description.contains("5 dimensions") }

        var partialBlock = GGUFWriter()
        partialBlock.addTensor("t", shape: [16], type: .q4_0, data: [UInt8](repeating: 0, count: 18))
        expectModelError({ _ = try openGGUF(partialBlock.bytes().bytes) }) { $0.description.contains("block size 32") }

        var huge = GGUFWriter()
        huge.addTensor("t", shape: [1 << 40, 1 << 40], type: .f32, data: [])
        expectModelError({ _ = try openGGUF(huge.bytes().bytes) }) { $0.description.contains("impossibly large") }

        var badAlignment = GGUFWriter()
        badAlignment.add("general.alignment", .uint32(24))
        expectModelError({ _ = try openGGUF(badAlignment.bytes().bytes) }) { $0.description.contains("power of two") }
    }

    @Test func misalignedTensorOffsetIsRefused() {
        var writer = GGUFWriter()
        writer.addTensor("a", shape: [1], type: .f32, data: [0, 0, 0, 0])
        var bytes = writer.bytes().bytes
        // The tensor info ends with its u64 offset: make it 4.
        let infoEnd = 24 + (8 + 1) + 4 + 8 + 4 + 8  // header, name "a", dimension count, shape, type, offset
        bytes[infoEnd - 8] = 4
        expectModelError({ _ = try openGGUF(bytes) }) { $0.description.contains("not a multiple of the alignment") }
    }

    @Test func missingAndEmptyFilesAreErrors() {
        expectModelError({ _ = try GGUFFile(path: "/nonexistent/model.gguf") }) {
            $0 == .cannotOpen(path: "/nonexistent/model.gguf", errno: ENOENT)
        }
        expectModelError({ _ = try openGGUF([]) }) { $0 == .truncated(what: "header", offset: 0, fileSize: 0) }
    }
}
