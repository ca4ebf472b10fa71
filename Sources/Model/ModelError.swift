/// Everything that can go wrong while reading a model file, building its config or its tokenizer.
/// Each case carries what a user needs to fix the problem; `description` is the message to print.
public enum ModelError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened or mapped (`errno` as reported by the system).
    case cannotOpen(path: String, errno: Int32)
    /// The file does not start with the GGUF magic "GGUF".
    case badMagic(found: [UInt8])
    /// A GGUF version this reader does not understand (it reads 2 and 3).
    case unsupportedVersion(UInt32)
    /// The file ends before a structure it announces (`what`) is complete.
    case truncated(what: String, offset: Int, fileSize: Int)
    /// A structurally invalid value, e.g. an unknown metadata value type or a tensor with 7 dimensions.
    case corrupt(String)
    /// A tensor type id that is not part of our table of GGML types.
    case unknownTensorType(id: UInt32, tensor: String)
    /// A tensor whose data would lie (partly) past the end of the file.
    case tensorDataOutOfBounds(tensor: String, end: Int, fileSize: Int)
    /// The tensor's type is known but there is no dequantization for it (e.g. Q4_K).
    case unsupportedDequantization(type: GGUFTensorType, tensor: String)
    /// No tensor with that name exists in the file.
    case missingTensor(String)
    /// A tensor exists but its shape is not what the config implies.
    case unexpectedTensorShape(tensor: String, expected: [Int], found: [Int])
    /// A required metadata key is absent.
    case missingMetadata(key: String)
    /// A metadata key has a value of the wrong type (`expected` names the wanted type).
    case wrongMetadataType(key: String, expected: String)
    /// The model's architecture is not one we can run.
    case unsupportedArchitecture(String, supported: [String])
    /// Config values that contradict each other (e.g. heads not dividing the model dimension).
    case invalidConfig(String)
    /// The tokenizer model or pre-tokenizer named in the metadata is not implemented.
    case unsupportedTokenizer(String)
    /// The tokenizer metadata is inconsistent (e.g. scores and tokens of different lengths).
    case invalidTokenizer(String)
    /// The chat template could not be recognized (`excerpt`: its first characters, or nil when absent).
    case unknownChatTemplate(excerpt: String?, supported: [String])
    /// The conversation does not fit the template (e.g. Llama 2 needs alternating user/assistant turns).
    case invalidConversation(String)
    /// A file a model folder needs is absent (`reason` says which role it plays).
    case missingFile(path: String, reason: String)
    /// A file of a model folder is malformed: JSON that does not parse, a safetensors header that lies,
    /// a shard cut short (`reason` says what is wrong).
    case invalidFile(path: String, reason: String)
    /// A tensor stored in a dtype we cannot read.
    case unsupportedDType(tensor: String, dtype: String, supported: [String])

    public var description: String {
        switch self {
        case let .cannotOpen(path, errno):
            return "cannot open model file '\(path)' (errno \(errno))"
        case let .badMagic(found):
            let hex = found.map { hexByte($0) }.joined(separator: " ")
            return "not a GGUF file: the first bytes are [\(hex)], expected 'GGUF' (47 47 55 46)"
        case let .unsupportedVersion(version):
            // A big-endian file shows its version byte-swapped.
            let hint = version > 0xFFFF ? " (a big-endian GGUF file? only little-endian is supported)" : ""
            return "unsupported GGUF version \(version)\(hint); supported versions: 2, 3"
        case let .truncated(what, offset, fileSize):
            return "GGUF file is truncated: \(what) at byte \(offset) runs past the end of the file (\(fileSize) bytes)"
        case let .corrupt(reason):
            return "GGUF file is corrupt: \(reason)"
        case let .unknownTensorType(id, tensor):
            return "tensor '\(tensor)' has unknown tensor type id \(id)"
        case let .tensorDataOutOfBounds(tensor, end, fileSize):
            return "data of tensor '\(tensor)' ends at byte \(end), past the end of the file (\(fileSize) bytes)"
        case let .unsupportedDequantization(type, tensor):
            let supported = GGUFTensorType.dequantizable.map(\.name).joined(separator: ", ")
            return "cannot dequantize tensor '\(tensor)' of type \(type.name); supported types: \(supported)"
        case let .missingTensor(name):
            return "the model has no tensor '\(name)'"
        case let .unexpectedTensorShape(tensor, expected, found):
            return "tensor '\(tensor)' has shape \(found), expected \(expected)"
        case let .missingMetadata(key):
            return "the model file has no metadata key '\(key)'"
        case let .wrongMetadataType(key, expected):
            return "metadata key '\(key)' is not of type \(expected)"
        case let .unsupportedArchitecture(name, supported):
            return "unsupported model architecture '\(name)'; supported: \(supported.joined(separator: ", "))"
        case let .invalidConfig(reason):
            return "invalid model config: \(reason)"
        case let .unsupportedTokenizer(reason):
            return "unsupported tokenizer: \(reason)"
        case let .invalidTokenizer(reason):
            return "invalid tokenizer metadata: \(reason)"
        case let .unknownChatTemplate(excerpt, supported):
            let list = supported.joined(separator: ", ")
            guard let excerpt else { return "the model file has no chat template (tokenizer.chat_template); pick one of: \(list)" }
            return "unrecognized chat template starting with \"\(excerpt)\"; supported: \(list)"
        case let .invalidConversation(reason):
            return "invalid conversation: \(reason)"
        case let .missingFile(path, reason):
            return "missing file '\(path)': \(reason)"
        case let .invalidFile(path, reason):
            return "invalid model file '\(path)': \(reason)"
        case let .unsupportedDType(tensor, dtype, supported):
            return "tensor '\(tensor)' has dtype \(dtype); supported dtypes: \(supported.joined(separator: ", "))"
        }
    }
}

private func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
}
