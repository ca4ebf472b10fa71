import Glibc

/// A GGUF model file (versions 2 and 3, little-endian), memory-mapped read-only.
///
/// Opening parses the header, all metadata and all tensor infos, and checks that every tensor's data
/// lies inside the file; tensor data itself is never copied until asked for (`data(of:)` is a view into
/// the mapping, `dequantize` writes Floats). Any malformed input gives a thrown `ModelError`, never a crash.
///
///     let gguf = try GGUFFile(path: "SmolLM2-135M-Instruct.Q4_1.gguf")
///     let norm = try gguf.dequantize(gguf.requireTensor("output_norm.weight"))
public final class GGUFFile: @unchecked Sendable {
    // @unchecked: every stored property is immutable after init and the mapping is read-only
    // (PROT_READ), so sharing a GGUFFile between threads is safe.

    public let path: String
    public let version: UInt32
    /// All metadata key/values (`general.architecture`, `llama.block_count`, `tokenizer.ggml.tokens`, ...).
    public let metadata: [String: GGUFValue]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// Alignment of tensor data in bytes (`general.alignment`, 32 when absent).
    public let alignment: Int
    public let fileSize: Int

    private let tensorIndex: [String: Int]
    private let file: MappedFile

    /// Maps and parses the file at `path`.
    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        // An empty or tiny file is reported as the truncated header it is.
        guard file.count >= 4 else { throw ModelError.truncated(what: "header", offset: 0, fileSize: file.count) }
        let parsed = try GGUFParser.parse(file.bytes)
        fileSize = file.count
        version = parsed.version
        metadata = parsed.metadata
        tensors = parsed.tensors
        alignment = parsed.alignment
        var index: [String: Int] = [:]
        for (i, tensor) in parsed.tensors.enumerated() { index[tensor.name] = i }
        tensorIndex = index
    }

    /// The tensor called `name`, or nil.
    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The tensor called `name`; throws `ModelError.missingTensor` when absent.
    public func requireTensor(_ name: String) throws -> GGUFTensorInfo {
        guard let tensor = tensor(named: name) else { throw ModelError.missingTensor(name) }
        return tensor
    }

    /// The raw bytes of `tensor`, a view into the mapping: valid only while this GGUFFile is alive.
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[tensor.offset..<(tensor.offset + tensor.byteCount)])
    }

    /// All elements of `tensor` as Floats, in GGML order (`shape[0]` fastest).
    public func dequantize(_ tensor: GGUFTensorInfo) throws -> [Float] {
        try [Float](unsafeUninitializedCapacity: tensor.elementCount) { buffer, count in
            try dequantize(tensor, into: buffer)
            count = tensor.elementCount
        }
    }

    /// Writes all elements of `tensor` into `output` (which must hold exactly `elementCount` Floats).
    public func dequantize(_ tensor: GGUFTensorInfo, into output: UnsafeMutableBufferPointer<Float>) throws {
        precondition(output.count == tensor.elementCount, "dequantize: output has \(output.count) slots for \(tensor.elementCount) elements")
        try Dequantize.run(tensor.type, from: data(of: tensor), into: output, tensorName: tensor.name)
    }
}

// MARK: - Typed metadata access

extension GGUFFile {
    // Each accessor returns nil when the key is absent and throws when it holds another type, so that
    // `try gguf.int("x") ?? 32` reads as "x, default 32" and a mistyped value is never silently ignored.

    /// An integer value of any integer type.
    public func int(_ key: String) throws -> Int? {
        try typed(key, "integer") { $0.int }
    }

    /// A floating-point (or integer) value.
    public func double(_ key: String) throws -> Double? {
        try typed(key, "number") { $0.double }
    }

    public func string(_ key: String) throws -> String? {
        try typed(key, "string") { $0.string }
    }

    public func bool(_ key: String) throws -> Bool? {
        try typed(key, "bool") { $0.bool }
    }

    /// An array of strings.
    public func strings(_ key: String) throws -> [String]? {
        try typed(key, "array of strings") { value in
            guard let array = value.array else { return nil }
            var out: [String] = []
            out.reserveCapacity(array.count)
            for element in array {
                guard let s = element.string else { return nil }
                out.append(s)
            }
            return out
        }
    }

    /// An array of integers.
    public func ints(_ key: String) throws -> [Int]? {
        try typed(key, "array of integers") { value in
            guard let array = value.array else { return nil }
            var out: [Int] = []
            out.reserveCapacity(array.count)
            for element in array {
                guard let i = element.int else { return nil }
                out.append(i)
            }
            return out
        }
    }

    /// An array of numbers, as Floats.
    public func floats(_ key: String) throws -> [Float]? {
        try typed(key, "array of numbers") { value in
            guard let array = value.array else { return nil }
            var out: [Float] = []
            out.reserveCapacity(array.count)
            for element in array {
                guard let d = element.double else { return nil }
                out.append(Float(d))
            }
            return out
        }
    }

    private func typed<T>(_ key: String, _ typeName: String, _ convert: (GGUFValue) -> T?) throws -> T? {
        guard let value = metadata[key] else { return nil }
        guard let converted = convert(value) else {
            throw ModelError.wrongMetadataType(key: key, expected: typeName)
        }
        return converted
    }
}

/// `value`, or `ModelError.missingMetadata(key)` when it is nil.
func required<T>(_ value: T?, _ key: String) throws -> T {
    guard let value else { throw ModelError.missingMetadata(key: key) }
    return value
}
