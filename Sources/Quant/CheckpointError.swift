/// Why a checkpoint was refused or could not be written. Each case names what is wrong and
/// where, so one line tells the user whether to re-run `quantize` or fix a path.
public enum CheckpointError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A file of the checkpoint is missing or unreadable.
    case unreadable(path: String, reason: String)
    /// manifest.json is not the JSON we write.
    case badManifest(path: String, reason: String)
    /// The checkpoint was written by a format version this build does not read.
    case unsupportedVersion(path: String, found: Int, supported: ClosedRange<Int>)
    /// model.safetensors ends before its header or its data says it should.
    case truncated(path: String, reason: String)
    /// model.safetensors' header is malformed.
    case badTensorFile(path: String, reason: String)
    /// A tensor's bytes do not hash to the manifest's checksum.
    case checksumMismatch(tensor: String, expected: String, found: String)
    /// A tensor's shape, dtype or presence disagrees with the manifest or with its layer's layout.
    case shapeMismatch(tensor: String, reason: String)
    /// Writing failed; nothing was left at the target.
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "cannot read checkpoint file \(path): \(reason)"
        case let .badManifest(path, reason): return "bad checkpoint manifest \(path): \(reason)"
        case let .unsupportedVersion(path, found, supported):
            return "checkpoint \(path) has format version \(found); this build reads versions \(supported.lowerBound) to \(supported.upperBound) (re-run quantize)"
        case let .truncated(path, reason): return "truncated checkpoint file \(path): \(reason)"
        case let .badTensorFile(path, reason): return "bad safetensors file \(path): \(reason)"
        case let .checksumMismatch(tensor, expected, found):
            return "checkpoint tensor \(tensor) is corrupt: SHA-256 \(found), manifest says \(expected)"
        case let .shapeMismatch(tensor, reason): return "checkpoint tensor \(tensor) does not match: \(reason)"
        case let .writeFailed(path, reason): return "cannot write checkpoint \(path): \(reason)"
        }
    }
}
