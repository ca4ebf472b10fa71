import Glibc
import Model
import Quant

/// The model file a checkpoint was made from: it supplies the tokenizer and the tensors FMPQ
/// keeps in floating point (embeddings, norms, LM head). The manifest records its path and
/// SHA-256; a different or changed file is refused.
public enum BaseModelFile {
    /// SHA-256 (hex) of the file at `path`.
    public static func sha256(path: String) throws -> String {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw QuantizedModelError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw QuantizedModelError("cannot stat \(path)") }
        let size = Int(info.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        try bytes.withUnsafeMutableBytes { raw in
            while done < size {
                let n = Glibc.read(fd, raw.baseAddress! + done, size - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw QuantizedModelError("cannot read \(path)") }
                done += n
            }
        }
        return SHA256.hex(bytes)
    }

    /// Opens the checkpoint's base model file, checking its SHA-256 when the manifest has one.
    public static func open(for checkpoint: QuantizedCheckpoint) throws -> GGUFFile {
        let reference = checkpoint.tokenizer
        guard reference.kind == "gguf" else { throw QuantizedModelError("checkpoint tokenizer kind \(reference.kind) is not supported (gguf only)") }
        guard access(reference.source, R_OK) == 0 else {
            throw QuantizedModelError("the checkpoint's base model file \(reference.source) is missing")
        }
        if let expected = reference.sha256 {
            let found = try sha256(path: reference.source)
            guard found == expected else {
                throw QuantizedModelError("the base model file \(reference.source) changed since quantize (SHA-256 \(found), manifest says \(expected))")
            }
        }
        return try GGUFFile(path: reference.source)
    }
}

/// A checkpoint that cannot be used with the model at hand; the message says why.
public struct QuantizedModelError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
