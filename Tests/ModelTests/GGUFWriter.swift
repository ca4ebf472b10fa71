@testable import Model

/// A small GGUF v3 writer for tests: metadata of every value type and tensors given as raw bytes,
/// laid out as llama.cpp does (infos, padding to the alignment, data with each tensor aligned).
struct GGUFWriter {
    var version: UInt32 = 3
    var alignment = 32
    private(set) var metadata: [(String, GGUFValue)] = []
    private(set) var tensors: [(name: String, shape: [Int], type: UInt32, data: [UInt8])] = []

    mutating func add(_ key: String, _ value: GGUFValue) {
        metadata.append((key, value))
    }

    /// `type` is a raw ggml type id so that tests can write unknown ones.
    mutating func addTensor(_ name: String, shape: [Int], type: UInt32, data: [UInt8]) {
        tensors.append((name, shape, type, data))
    }

    mutating func addTensor(_ name: String, shape: [Int], type: GGUFTensorType, data: [UInt8]) {
        addTensor(name, shape: shape, type: type.rawValue, data: data)
    }

    /// The file's bytes, and the offset where tensor data starts.
    func bytes() -> (bytes: [UInt8], dataStart: Int) {
        var out: [UInt8] = Array("GGUF".utf8)
        out.append(le: version)
        out.append(le: UInt64(tensors.count))
        out.append(le: UInt64(metadata.count))
        for (key, value) in metadata {
            out.append(string: key)
            out.append(le: Self.typeID(value))
            out.append(value: value)
        }
        var offsets: [Int] = []
        var next = 0
        for tensor in tensors {
            offsets.append(next)
            next += (tensor.data.count + alignment - 1) / alignment * alignment
        }
        for (tensor, offset) in zip(tensors, offsets) {
            out.append(string: tensor.name)
            out.append(le: UInt32(tensor.shape.count))
            for d in tensor.shape { out.append(le: UInt64(d)) }
            out.append(le: tensor.type)
            out.append(le: UInt64(offset))
        }
        while out.count % alignment != 0 { out.append(0) }
        let dataStart = out.count
        for (tensor, offset) in zip(tensors, offsets) {
            while out.count < dataStart + offset { out.append(0) }
            out += tensor.data
        }
        return (out, dataStart)
    }

    static func typeID(_ value: GGUFValue) -> UInt32 {
        let type: GGUFValueType = switch value {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .uint64: .uint64
        case .int64: .int64
        case .float32: .float32
        case .float64: .float64
        case .bool: .bool
        case .string: .string
        case .array: .array
        }
        return type.rawValue
    }
}

extension [UInt8] {
    mutating func append<T: FixedWidthInteger>(le value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    mutating func append(string: String) {
        append(le: UInt64(string.utf8.count))
        append(contentsOf: string.utf8)
    }

    mutating func append(half value: Float) {
        append(le: Float16(value).bitPattern)
    }

    mutating func append(value: GGUFValue) {
        switch value {
        case let .uint8(v): append(le: v)
        case let .int8(v): append(le: v)
        case let .uint16(v): append(le: v)
        case let .int16(v): append(le: v)
        case let .uint32(v): append(le: v)
        case let .int32(v): append(le: v)
        case let .uint64(v): append(le: v)
        case let .int64(v): append(le: v)
        case let .float32(v): append(le: v.bitPattern)
        case let .float64(v): append(le: v.bitPattern)
        case let .bool(v): append(v ? 1 : 0)
        case let .string(v): append(string: v)
        case let .array(elements):
            // An empty array is written as an array of uint8.
            append(le: elements.first.map(GGUFWriter.typeID) ?? GGUFValueType.uint8.rawValue)
            append(le: UInt64(elements.count))
            for element in elements { append(value: element) }
        }
    }
}
