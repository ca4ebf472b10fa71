import Glibc

/// A model on disk, opened: its weights (mapped, not yet loaded), and how to get its tokenizer and
/// chat template. What `--model` names, whether a GGUF file or a Hugging Face folder.
///
///     let source = try openModel("SmolLM2-135M-Instruct.Q4_1.gguf")   // or a folder with config.json
///     let tokenizer = try source.tokenizer()
///     let model = try LlamaCPUModel(weights: source.weights)
public struct ModelSource: Sendable {
    /// What the path held: the opened file or folder.
    public enum Format: Sendable {
        case gguf(GGUFWeights)
        case huggingFace(HuggingFaceModel)
    }

    public let path: String
    public let format: Format

    public init(gguf file: GGUFFile) throws {
        path = file.path
        format = .gguf(try GGUFWeights(file: file))
    }

    public init(huggingFace folder: HuggingFaceModel) {
        path = folder.folder
        format = .huggingFace(folder)
    }

    /// The weights, for `LlamaCPUModel(weights:)`.
    public var weights: any LlamaWeightSource {
        switch format {
        case let .gguf(weights): weights
        case let .huggingFace(folder): folder
        }
    }

    public var config: ModelConfig { weights.config }

    /// The model's own tokenizer: from GGUF metadata, or the folder's tokenizer.json.
    public func tokenizer() throws -> any Tokenizer {
        switch format {
        case let .gguf(weights): try makeTokenizer(gguf: weights.file)
        case let .huggingFace(folder): try HuggingFaceTokenizer.load(folder: folder.folder, config: folder.config)
        }
    }

    /// The model's chat template: GGUF's `tokenizer.chat_template`, or the folder's tokenizer_config.json.
    public func chatTemplate() throws -> ChatTemplate {
        switch format {
        case let .gguf(weights): try ChatTemplate(gguf: weights.file)
        case let .huggingFace(folder): try HuggingFaceTokenizer.chatTemplate(folder: folder.folder)
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
