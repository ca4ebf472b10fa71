import FoundationEssentials
import Glibc

/// Reading the JSON files of a Hugging Face model folder (config.json, tokenizer.json, ...).
enum JSONFile {
    /// True when `path` exists (file or folder).
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// The file at `path` decoded as `T`. A missing file is `ModelError.missingFile` with `role` as the
    /// reason; a file that is not the JSON `T` expects is `ModelError.invalidFile`, naming the bad field.
    static func decode<T: Decodable>(_ type: T.Type, path: String, role: String) throws -> T {
        guard exists(path) else { throw ModelError.missingFile(path: path, reason: role) }
        let file = try MappedFile(path: path)
        do {
            return try JSONDecoder().decode(T.self, from: Data(file.bytes))
        } catch let error as DecodingError {
            throw ModelError.invalidFile(path: path, reason: describe(error))
        } catch {
            throw ModelError.invalidFile(path: path, reason: "\(error)")
        }
    }

    /// One line for a decoding error: which field, and what was wrong with it.
    private static func describe(_ error: DecodingError) -> String {
        func where_(_ path: [any CodingKey]) -> String {
            path.isEmpty ? "the top level" : "'" + path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") + "'"
        }
        switch error {
        case let .typeMismatch(type, context): return "\(where_(context.codingPath)) is not a \(type)"
        case let .valueNotFound(type, context): return "\(where_(context.codingPath)) is null, expected a \(type)"
        case let .keyNotFound(key, context): return "\(where_(context.codingPath + [key])) is missing"
        case let .dataCorrupted(context): return "not valid JSON at \(where_(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

/// A JSON value that is either one `T` or a list of them (config.json's `eos_token_id` is 2 in Llama 2
/// and [128001, 128008, 128009] in Llama 3.1).
struct OneOrMany<T: Decodable>: Decodable {
    var values: [T]

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(T.self) {
            values = [one]
        } else {
            values = try container.decode([T].self)
        }
    }
}
