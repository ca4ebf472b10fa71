import FoundationEssentials

/// The safetensors container: an 8-byte little-endian header length, a JSON header mapping each
/// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data that
/// follows) plus an optional "__metadata__" object of strings, then the tensors' bytes, packed
/// with no gaps. The header is padded with spaces to a multiple of 8 bytes, so every tensor
/// starts 8-byte aligned in the file (useful to mmap it).
public enum SafeTensorsFile {
    /// The header (length prefix included) for `tensors`, stored in the given order.
    public static func header(for tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]) throws -> [UInt8] {
        var entries: [String: JSONValue] = [:]
        var offset = 0
        for (name, tensor) in tensors {
            guard name != "__metadata__", entries[name] == nil else {
                throw QuantError.shapeMismatch("tensor name \(name) is reserved or repeated")
            }
            entries[name] = .object([
                "dtype": .string(tensor.dtype.rawValue),
                "shape": .array(tensor.shape.map { .int($0) }),
                "data_offsets": .array([.int(offset), .int(offset + tensor.bytes.count)]),
            ])
            offset += tensor.bytes.count
        }
        if !metadata.isEmpty { entries["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var json = [UInt8](try encoder.encode(JSONValue.object(entries)))
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        let length = UInt64(json.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) } + json
    }

    /// The whole file for `tensors`, in memory (small files and tests; `QuantizedCheckpoint`
    /// streams instead).
    public static func encode(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]) throws -> [UInt8] {
        var bytes = try header(for: tensors, metadata: metadata)
        for (_, tensor) in tensors { bytes += tensor.bytes }
        return bytes
    }

    /// Parses a whole file; `path` only names it in errors. Refuses a file whose header or
    /// data is cut short (`.truncated`), whose header is not a valid safetensors header, or that holds
    /// a dtype checkpoints do not use (`TensorDType`).
    public static func decode(_ bytes: [UInt8], path: String) throws(CheckpointError) -> (tensors: [String: Tensor], metadata: [String: String]) {
        let header: SafeTensorsHeader
        do {
            header = try bytes.withUnsafeBytes { try SafeTensorsHeader(file: $0, path: path) }
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw .badTensorFile(path: path, reason: "\(error)")  // unreachable: the header throws only CheckpointError
        }
        var tensors: [String: Tensor] = [:]
        for entry in header.entries {
            guard let dtype = TensorDType(rawValue: entry.dtype) else {
                throw .badTensorFile(path: path, reason: "tensor \(entry.name) has dtype \(entry.dtype); checkpoints use "
                    + TensorDType.allCases.map(\.rawValue).joined(separator: ", "))
            }
            tensors[entry.name] = try! Tensor(dtype: dtype, shape: entry.shape, bytes: Array(bytes[entry.byteRange]))
        }
        return (tensors, header.metadata)
    }
}
