/// The weights of a GGUF model file, with the config read from its metadata.
///
/// GGML lists a matrix's dimensions innermost first ([in, out] with `in` contiguous): the bytes are
/// already the row-major [out, in] the forward pass wants, so reading is dequantizing in file order.
public struct GGUFWeights: LlamaWeightSource {
    public let file: GGUFFile
    public let config: ModelConfig

    /// `config` defaults to the one the file's metadata describes.
    public init(file: GGUFFile, config: ModelConfig? = nil) throws {
        self.file = file
        self.config = try config ?? ModelConfig(gguf: file)
    }

    public func name(of tensor: LlamaTensor) -> String { LlamaTensorNames.name(of: tensor) }

    public func shape(of tensor: LlamaTensor) -> [Int]? {
        file.tensor(named: name(of: tensor)).map { $0.shape.reversed() }
    }

    public func read(_ tensor: LlamaTensor, into output: UnsafeMutableBufferPointer<Float>) throws {
        try file.dequantize(file.requireTensor(name(of: tensor)), into: output)
    }

    /// Checks shapes in GGML order, as GGUF tools print them.
    public func checkTensors() throws {
        for (name, shape) in config.expectedTensorShapes {
            let tensor = try file.requireTensor(name)
            guard tensor.shape == shape else {
                throw ModelError.unexpectedTensorShape(tensor: name, expected: shape, found: tensor.shape)
            }
        }
    }

    public func ropeFrequencyFactors() throws -> [Float]? {
        guard case let .frequencyFactors(name) = config.ropeScaling else { return nil }
        return try file.dequantize(file.requireTensor(name))
    }
}
