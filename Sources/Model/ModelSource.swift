import Glibc

/// A model on disk, opened: its weights (mapped, not yet loaded), and how to get its tokenizer and
/// chat template. What `--model` names, whether a GGUF file or a Hugging Face folder.
///
///     let source = try openModel("SmolLM2-135M-Instruct.Q4_1.gguf")   // or a folder with config.json
///     let tokenizer = try source.tokenizer()
///     let model = try LlamaCPUModel(weights: source.weights)
public struct ModelSource: Sendable {
    public enum Format: String, Sendable {
        case gguf
        case huggingFace
    }

    public let path: String
    public let format: Format
    public let weights: any LlamaWeightSource
    public var config: ModelConfig { weights.config }

    public init(gguf file: GGUFFile) throws {
        path = file.path
        format = .gguf
        weights = try GGUFWeights(file: file)
    }

    public init(huggingFace folder: HuggingFaceModel) {
        path = folder.folder
        format = .huggingFace
        weights = folder
    }

    /// The model's own tokenizer: from GGUF metadata, or the folder's tokenizer.json.
    public func tokenizer() throws -> any Tokenizer {
        switch weights {
        case let gguf as GGUFWeights: return try makeTokenizer(gguf: gguf.file)
        case let folder as HuggingFaceModel: return try HuggingFaceTokenizer.load(folder: folder.folder, config: config)
        default: preconditionFailure("ModelSource: unknown weight source \(type(of: weights))")
        }
    }

    /// The model's chat template: GGUF's `tokenizer.chat_template`, or the folder's tokenizer_config.json.
    public func chatTemplate() throws -> ChatTemplate {
        switch weights {
        case let gguf as GGUFWeights: return try ChatTemplate(gguf: gguf.file)
        case let folder as HuggingFaceModel: return try HuggingFaceTokenizer.chatTemplate(folder: folder.folder)
        default: preconditionFailure("ModelSource: unknown weight source \(type(of: weights))")
        }
    }
}

/// Opens `path` by what it is: a folder is a Hugging Face model folder (config.json + safetensors),
/// anything else a GGUF file.
public func openModel(_ path: String) throws -> ModelSource {
    var info = stat()
    guard stat(path, &info) == 0 else { throw ModelError.cannotOpen(path: path, errno: errno) }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        return ModelSource(huggingFace: try HuggingFaceModel(folder: path))
    }
    return try ModelSource(gguf: GGUFFile(path: path))
}
