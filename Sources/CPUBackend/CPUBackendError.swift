/// What the CPU forward pass refuses to do; `description` is the message to print.
public enum CPUBackendError: Error, Equatable, CustomStringConvertible {
    /// A feature of the model that the CPU backend does not implement.
    case unsupported(String)
    /// A token id outside the vocabulary.
    case tokenOutOfRange(id: Int32, vocabularySize: Int)
    /// The tokens would not fit in the KV cache.
    case contextFull(needed: Int, capacity: Int)
    /// A position past the tokens already in the cache (positions must be contiguous).
    case positionGap(position: Int, cached: Int)
    /// The KV cache was made for another model shape.
    case cacheMismatch(String)

    public var description: String {
        switch self {
        case let .unsupported(what):
            return "the CPU backend does not support \(what)"
        case let .tokenOutOfRange(id, vocabularySize):
            return "token id \(id) is outside the vocabulary (0..<\(vocabularySize))"
        case let .contextFull(needed, capacity):
            return "the context needs \(needed) positions but the KV cache holds \(capacity)"
        case let .positionGap(position, cached):
            return "position \(position) is past the \(cached) tokens in the KV cache; positions must be contiguous"
        case let .cacheMismatch(reason):
            return "KV cache does not fit the model: \(reason)"
        }
    }
}
