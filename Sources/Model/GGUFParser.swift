/// Parses the header, metadata and tensor infos of a GGUF file held in memory. Every read is bounds
/// checked, and every count read from the file is checked against the bytes left before anything is
/// allocated for it, so a corrupt file can neither crash nor make us allocate gigabytes.
struct GGUFParser {
    struct Result {
        var version: UInt32
        var metadata: [String: GGUFValue]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
    }

    static let magic: [UInt8] = Array("GGUF".utf8)
    static let supportedVersions: ClosedRange<UInt32> = 2...3
    /// GGML tensors have at most 4 dimensions (GGML_MAX_DIMS).
    static let maxDimensions = 4
    /// Arrays of arrays are legal; a bound keeps a malicious file from recursing without end.
    static let maxArrayNesting = 8

    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    private init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Parses everything up to the tensor data of the GGUF file in `bytes`.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> Result {
        var parser = GGUFParser(bytes: bytes)
        return try parser.parseAll()
    }

    private mutating func parseAll() throws -> Result {
        let magic = try take(4, "magic")
        guard magic.elementsEqual(Self.magic) else { throw ModelError.badMagic(found: Array(magic)) }
        let version: UInt32 = try scalar("version")
        guard Self.supportedVersions.contains(version) else { throw ModelError.unsupportedVersion(version) }
        let tensorCount = try count("tensor count", minimumBytesEach: 24)
        let keyValueCount = try count("metadata count", minimumBytesEach: 12)

        var metadata: [String: GGUFValue] = [:]
        for _ in 0..<keyValueCount {
            let key = try string("metadata key")
            let rawType: UInt32 = try scalar("type of '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw ModelError.corrupt("metadata key '\(key)' has unknown value type \(rawType)")
            }
            metadata[key] = try value(of: type, what: "value of '\(key)'", depth: 0)
        }

        var alignment = 32
        if let value = metadata["general.alignment"] {
            guard let a = value.int, a > 0, a & (a - 1) == 0 else {
                throw ModelError.corrupt("general.alignment must be a positive power of two, found \(value)")
            }
            alignment = a
        }

        var infos: [(name: String, shape: [Int], type: GGUFTensorType, relativeOffset: Int, byteCount: Int)] = []
        infos.reserveCapacity(tensorCount)
        for _ in 0..<tensorCount {
            let name = try string("tensor name")
            let dimensionCount: UInt32 = try scalar("dimension count of '\(name)'")
            guard dimensionCount <= Self.maxDimensions else {
                throw ModelError.corrupt("tensor '\(name)' has \(dimensionCount) dimensions (at most \(Self.maxDimensions))")
            }
            var shape: [Int] = []
            for _ in 0..<dimensionCount {
                let dimension: UInt64 = try scalar("shape of '\(name)'")
                guard let d = Int(exactly: dimension), d > 0 else {
                    throw ModelError.corrupt("tensor '\(name)' has dimension \(dimension)")
                }
                shape.append(d)
            }
            let rawType: UInt32 = try scalar("type of '\(name)'")
            guard let type = GGUFTensorType(rawValue: rawType) else {
                throw ModelError.unknownTensorType(id: rawType, tensor: name)
            }
            let rawOffset: UInt64 = try scalar("offset of '\(name)'")
            guard let relativeOffset = Int(exactly: rawOffset), relativeOffset % alignment == 0 else {
                throw ModelError.corrupt("tensor '\(name)' has offset \(rawOffset), not a multiple of the alignment \(alignment)")
            }
            let byteCount = try Self.byteCount(name: name, shape: shape, type: type)
            infos.append((name, shape, type, relativeOffset, byteCount))
        }

        // Tensor data starts at the next multiple of the alignment after the tensor infos.
        let dataStart = (offset + alignment - 1) / alignment * alignment
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(infos.count)
        var names = Set<String>()
        for info in infos {
            guard names.insert(info.name).inserted else { throw ModelError.corrupt("tensor '\(info.name)' appears twice") }
            let (start, o1) = dataStart.addingReportingOverflow(info.relativeOffset)
            let (end, o2) = start.addingReportingOverflow(info.byteCount)
            guard !o1, !o2, end <= bytes.count else {
                throw ModelError.tensorDataOutOfBounds(tensor: info.name, end: o1 || o2 ? Int.max : end, fileSize: bytes.count)
            }
            tensors.append(GGUFTensorInfo(name: info.name, shape: info.shape, type: info.type, offset: start, byteCount: info.byteCount))
        }
        return Result(version: version, metadata: metadata, tensors: tensors, alignment: alignment)
    }

    /// Bytes of a tensor of `shape` and `type`; the first dimension must be whole blocks.
    static func byteCount(name: String, shape: [Int], type: GGUFTensorType) throws -> Int {
        let rowLength = shape.first ?? 1
        guard rowLength % type.blockSize == 0 else {
            throw ModelError.corrupt("tensor '\(name)' of type \(type.name) has rows of \(rowLength) elements, not a multiple of its block size \(type.blockSize)")
        }
        var blocks = 1
        for (i, d) in shape.enumerated() {
            let (product, overflow) = blocks.multipliedReportingOverflow(by: i == 0 ? d / type.blockSize : d)
            guard !overflow else { throw ModelError.corrupt("tensor '\(name)' has an impossibly large shape \(shape)") }
            blocks = product
        }
        let (bytes, overflow) = blocks.multipliedReportingOverflow(by: type.bytesPerBlock)
        guard !overflow else { throw ModelError.corrupt("tensor '\(name)' has an impossibly large shape \(shape)") }
        return bytes
    }

    // MARK: - Reading primitives

    private mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - offset else {
            throw ModelError.truncated(what: what(), offset: offset, fileSize: bytes.count)
        }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
    }

    private mutating func scalar<T: FixedWidthInteger>(_ what: @autoclosure () -> String) throws -> T {
        T(littleEndian: try take(MemoryLayout<T>.size, what()).loadUnaligned(as: T.self))
    }

    private mutating func float32(_ what: @autoclosure () -> String) throws -> Float {
        Float(bitPattern: try scalar(what()))
    }

    private mutating func float64(_ what: @autoclosure () -> String) throws -> Double {
        Double(bitPattern: try scalar(what()))
    }

    /// A u64 count of items that each take at least `minimumBytesEach` bytes: a count the rest of the
    /// file cannot hold is reported as truncation before anything is allocated.
    private mutating func count(_ what: String, minimumBytesEach: Int) throws -> Int {
        let start = offset
        let raw: UInt64 = try scalar(what)
        let left = UInt64(bytes.count - offset)
        guard raw <= left / UInt64(max(minimumBytesEach, 1)) else {
            throw ModelError.truncated(what: "\(what) \(raw)", offset: start, fileSize: bytes.count)
        }
        return Int(raw)
    }

    private mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let length = try count(what(), minimumBytesEach: 1)
        return String(decoding: try take(length, what()), as: UTF8.self)
    }

    private mutating func value(of type: GGUFValueType, what: @autoclosure () -> String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try scalar(what()))
        case .int8: return .int8(try scalar(what()))
        case .uint16: return .uint16(try scalar(what()))
        case .int16: return .int16(try scalar(what()))
        case .uint32: return .uint32(try scalar(what()))
        case .int32: return .int32(try scalar(what()))
        case .uint64: return .uint64(try scalar(what()))
        case .int64: return .int64(try scalar(what()))
        case .float32: return .float32(try float32(what()))
        case .float64: return .float64(try float64(what()))
        case .bool:
            let byte: UInt8 = try scalar(what())
            guard byte <= 1 else { throw ModelError.corrupt("\(what()) is a bool with byte value \(byte)") }
            return .bool(byte == 1)
        case .string: return .string(try string(what()))
        case .array:
            guard depth < Self.maxArrayNesting else { throw ModelError.corrupt("\(what()) nests arrays too deeply") }
            let rawElementType: UInt32 = try scalar(what())
            guard let elementType = GGUFValueType(rawValue: rawElementType) else {
                throw ModelError.corrupt("\(what()) is an array of unknown value type \(rawElementType)")
            }
            let n = try count(what(), minimumBytesEach: Self.minimumSize(of: elementType))
            var elements: [GGUFValue] = []
            elements.reserveCapacity(n)
            for _ in 0..<n { elements.append(try value(of: elementType, what: what(), depth: depth + 1)) }
            return .array(elements)
        }
    }

    private static func minimumSize(of type: GGUFValueType) -> Int {
        switch type {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64, .string: 8  // a string is at least its u64 length
        case .array: 12  // element type + count
        }
    }
}
