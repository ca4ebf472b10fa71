import Model

/// A llama model of any shape with seeded random fp32 weights, held in memory: what the GPU
/// runner checks and the tensor-parallel tests run on both sides without a model file.
public struct RandomLlamaWeights: LlamaWeightSource {
    public let config: ModelConfig
    private let tensors: [LlamaTensor: [Float]]
    private let shapes: [LlamaTensor: [Int]]

    /// Matrices uniform in ±1/sqrt(inputs) (outputs of variance ~1/3 per unit input), norms in
    /// [0.8, 1.2], biases in ±0.1, embeddings in ±1.
    public init(config: ModelConfig, random: inout some RandomNumberGenerator) {
        self.config = config
        var tensors: [LlamaTensor: [Float]] = [:], shapes: [LlamaTensor: [Int]] = [:]
        for (tensor, shape) in config.expectedTensors {
            let count = shape.reduce(1, *)
            let range: ClosedRange<Float>
            switch tensor {
            case .tokenEmbedding: range = -1...1
            case .outputNorm, .layer(_, .attentionNorm), .layer(_, .ffnNorm): range = 0.8...1.2
            case .layer(_, .queryBias), .layer(_, .keyBias), .layer(_, .valueBias): range = -0.1...0.1
            default:
                let bound = 1 / Float(shape.last!).squareRoot()
                range = -bound...bound
            }
            tensors[tensor] = (0..<count).map { _ in Float.random(in: range, using: &random) }
            shapes[tensor] = shape
        }
        self.tensors = tensors
        self.shapes = shapes
    }

    public func name(of tensor: LlamaTensor) -> String { "\(tensor)" }
    public func shape(of tensor: LlamaTensor) -> [Int]? { shapes[tensor] }

    public func read(_ tensor: LlamaTensor, into output: UnsafeMutableBufferPointer<Float>) throws {
        guard let values = tensors[tensor], values.count == output.count else { throw ModelError.missingTensor(name(of: tensor)) }
        _ = output.update(from: values)
    }

    public func ropeFrequencyFactors() throws -> [Float]? { nil }
}
