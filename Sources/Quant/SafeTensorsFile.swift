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
    /// data is cut short (`.truncated`) or whose header is not a valid safetensors header.
    public static func decode(_ bytes: [UInt8], path: String) throws(CheckpointError) -> (tensors: [String: Tensor], metadata: [String: String]) {
        guard bytes.count >= 8 else { throw .truncated(path: path, reason: "\(bytes.count) bytes, shorter than the header length") }
        let length = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[$1]) << (8 * UInt64($1)) }
        guard length <= UInt64(bytes.count - 8) else {
            throw .truncated(path: path, reason: "header of \(length) bytes, file of \(bytes.count)")
        }
        let headerEnd = 8 + Int(length)
        let header: JSONValue
        do {
            header = try JSONDecoder().decode(JSONValue.self, from: Data(bytes[8..<headerEnd]))
        } catch {
            throw .badTensorFile(path: path, reason: "header is not JSON (\(error))")
        }
        guard case let .object(entries) = header else { throw .badTensorFile(path: path, reason: "header is not a JSON object") }
        let dataSize = bytes.count - headerEnd
        var metadata: [String: String] = [:]
        var spans: [(name: String, dtype: TensorDType, shape: [Int], begin: Int, end: Int)] = []
        for (name, entry) in entries {
            if name == "__metadata__" {
                guard case let .object(members) = entry else { throw .badTensorFile(path: path, reason: "__metadata__ is not an object") }
                for (key, value) in members {
                    guard case let .string(text) = value else { throw .badTensorFile(path: path, reason: "__metadata__.\(key) is not a string") }
                    metadata[key] = text
                }
                continue
            }
            guard case let .string(dtypeName)? = entry["dtype"], let dtype = TensorDType(rawValue: dtypeName) else {
                throw .badTensorFile(path: path, reason: "tensor \(name) has no supported dtype")
            }
            guard case let .array(dims)? = entry["shape"], let shape = Self.integers(dims), shape.allSatisfy({ $0 >= 0 }) else {
                throw .badTensorFile(path: path, reason: "tensor \(name) has no valid shape")
            }
            guard case let .array(offsets)? = entry["data_offsets"], let span = Self.integers(offsets), span.count == 2,
                  span[0] >= 0, span[0] <= span[1]
            else { throw .badTensorFile(path: path, reason: "tensor \(name) has no valid data_offsets") }
            guard span[1] - span[0] == Tensor.elements(shape) * dtype.byteSize else {
                throw .badTensorFile(path: path, reason: "tensor \(name): \(span[1] - span[0]) bytes for \(dtype.rawValue) \(shape)")
            }
            spans.append((name, dtype, shape, span[0], span[1]))
        }
        // The data must be exactly the tensors, back to back (the safetensors rule: no holes,
        // no overlaps), so a file with missing bytes is caught even when the header survived.
        spans.sort { $0.begin != $1.begin ? $0.begin < $1.begin : $0.end < $1.end }
        let needed = spans.last?.end ?? 0
        guard needed <= dataSize else { throw .truncated(path: path, reason: "data of \(dataSize) bytes, header needs \(needed)") }
        var expected = 0
        for span in spans {
            guard span.begin == expected else { throw .badTensorFile(path: path, reason: "tensor \(span.name) leaves a gap or overlaps") }
            expected = span.end
        }
        guard expected == dataSize else { throw .badTensorFile(path: path, reason: "\(dataSize - expected) bytes after the last tensor") }
        var tensors: [String: Tensor] = [:]
        for span in spans {
            tensors[span.name] = try! Tensor(dtype: span.dtype, shape: span.shape, bytes: Array(bytes[headerEnd + span.begin..<headerEnd + span.end]))
        }
        return (tensors, metadata)
    }

    private static func integers(_ values: [JSONValue]) -> [Int]? {
        var out: [Int] = []
        for value in values {
            guard case let .int(i) = value else { return nil }
            out.append(i)
        }
        return out
    }
}
