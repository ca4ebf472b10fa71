import FoundationEssentials

/// The parsed and checked header of a safetensors file: where each tensor's bytes lie.
///
/// Shared by the checkpoint reader (`SafeTensorsFile.decode`, whole files) and the model loader
/// (memory-mapped Hugging Face shards), so both refuse the same malformed files the same way.
/// Dtypes are kept as the file names them ("BF16", "F64", ...): each reader decides which it accepts,
/// and can say so by name.
public struct SafeTensorsHeader: Sendable {
    /// One tensor of the file.
    public struct Entry: Sendable, Equatable {
        public let name: String
        /// The safetensors dtype name, e.g. "F32", "BF16".
        public let dtype: String
        /// Row-major, outermost first (PyTorch order).
        public let shape: [Int]
        /// Byte range in the file (absolute: the header is already added).
        public let byteRange: Range<Int>
    }

    /// Tensors in file order.
    public let entries: [Entry]
    /// The optional "__metadata__" object.
    public let metadata: [String: String]
    /// Where the tensor data starts: 8 + the header's length.
    public let dataOffset: Int

    /// Bytes per element of every dtype the safetensors format defines (nil for a name it does not).
    public static func elementSize(of dtype: String) -> Int? {
        switch dtype {
        case "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3": return 1
        case "U16", "I16", "F16", "BF16": return 2
        case "U32", "I32", "F32": return 4
        case "U64", "I64", "F64": return 8
        default: return nil
        }
    }

    /// Parses the header at the start of `file` (the whole file, or at least its header when
    /// `fileSize` gives the full size) and checks that the tensors tile the data exactly: no gaps,
    /// no overlaps, nothing past the end (`.truncated`), nothing left over. `path` names the file in errors.
    public init(file: UnsafeRawBufferPointer, fileSize: Int? = nil, path: String) throws(CheckpointError) {
        let size = fileSize ?? file.count
        guard file.count >= 8 else { throw .truncated(path: path, reason: "\(size) bytes, shorter than the header length") }
        let length = (0..<8).reduce(UInt64(0)) { $0 | UInt64(file[$1]) << (8 * UInt64($1)) }
        guard length <= UInt64(file.count - 8) else {
            throw .truncated(path: path, reason: "header of \(length) bytes, file of \(size)")
        }
        dataOffset = 8 + Int(length)
        let header: JSONValue
        do {
            header = try JSONDecoder().decode(JSONValue.self, from: Data(UnsafeRawBufferPointer(rebasing: file[8..<dataOffset])))
        } catch {
            throw .badTensorFile(path: path, reason: "header is not JSON (\(error))")
        }
        guard case let .object(members) = header else { throw .badTensorFile(path: path, reason: "header is not a JSON object") }

        var metadata: [String: String] = [:]
        var spans: [(name: String, dtype: String, shape: [Int], begin: Int, end: Int)] = []
        for (name, entry) in members {
            if name == "__metadata__" {
                guard case let .object(values) = entry else { throw .badTensorFile(path: path, reason: "__metadata__ is not an object") }
                for (key, value) in values {
                    guard case let .string(text) = value else { throw .badTensorFile(path: path, reason: "__metadata__.\(key) is not a string") }
                    metadata[key] = text
                }
                continue
            }
            guard case let .string(dtype)? = entry["dtype"], let elementSize = Self.elementSize(of: dtype) else {
                throw .badTensorFile(path: path, reason: "tensor \(name) has no valid safetensors dtype")
            }
            guard case let .array(dims)? = entry["shape"], let shape = Self.integers(dims), shape.allSatisfy({ $0 >= 0 }) else {
                throw .badTensorFile(path: path, reason: "tensor \(name) has no valid shape")
            }
            guard case let .array(offsets)? = entry["data_offsets"], let span = Self.integers(offsets), span.count == 2,
                  span[0] >= 0, span[0] <= span[1]
            else { throw .badTensorFile(path: path, reason: "tensor \(name) has no valid data_offsets") }
            guard span[1] - span[0] == shape.reduce(1, *) * elementSize else {
                throw .badTensorFile(path: path, reason: "tensor \(name): \(span[1] - span[0]) bytes for \(dtype) \(shape)")
            }
            spans.append((name, dtype, shape, span[0], span[1]))
        }
        // The data must be exactly the tensors, back to back (the safetensors rule: no holes,
        // no overlaps), so a file with missing bytes is caught even when the header survived.
        spans.sort { $0.begin != $1.begin ? $0.begin < $1.begin : $0.end < $1.end }
        let dataSize = size - dataOffset
        let needed = spans.last?.end ?? 0
        guard needed <= dataSize else { throw .truncated(path: path, reason: "data of \(dataSize) bytes, header needs \(needed)") }
        var expected = 0
        for span in spans {
            guard span.begin == expected else { throw .badTensorFile(path: path, reason: "tensor \(span.name) leaves a gap or overlaps") }
            expected = span.end
        }
        guard expected == dataSize else { throw .badTensorFile(path: path, reason: "\(dataSize - expected) bytes after the last tensor") }
        let offset = dataOffset
        entries = spans.map { Entry(name: $0.name, dtype: $0.dtype, shape: $0.shape, byteRange: (offset + $0.begin)..<(offset + $0.end)) }
        self.metadata = metadata
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
