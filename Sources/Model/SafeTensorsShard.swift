import Quant

/// One safetensors file of a Hugging Face checkpoint, memory-mapped: its header is parsed and checked
/// at open (Quant's `SafeTensorsHeader`, the reader checkpoints use too), tensor bytes are views into
/// the mapping, converted to fp32 only when the loader asks.
final class SafeTensorsShard: @unchecked Sendable {
    // @unchecked: immutable after init; the mapping is read-only.

    /// The dtypes a model checkpoint may use, and how each maps onto the GGML types `Dequantize` reads.
    static let supportedDTypes: [String: GGUFTensorType] = ["F32": .f32, "F16": .f16, "BF16": .bf16]
    static let supportedDTypeNames = ["F32", "F16", "BF16"]

    let path: String
    let tensors: [String: SafeTensorsHeader.Entry]
    private let file: MappedFile

    init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        do {
            let header = try SafeTensorsHeader(file: file.bytes, path: path)
            var tensors: [String: SafeTensorsHeader.Entry] = [:]
            for entry in header.entries { tensors[entry.name] = entry }
            self.tensors = tensors
        } catch {
            throw ModelError.invalidFile(path: path, reason: "\(error)")
        }
    }

    /// Converts tensor `name` (which must be in this shard) to Floats in stored (row-major) order.
    func read(_ name: String, into output: UnsafeMutableBufferPointer<Float>) throws {
        let entry = tensors[name]!
        guard let type = Self.supportedDTypes[entry.dtype] else {
            throw ModelError.unsupportedDType(tensor: name, dtype: entry.dtype, supported: Self.supportedDTypeNames)
        }
        precondition(output.count == entry.shape.reduce(1, *), "SafeTensorsShard.read: \(output.count) slots for \(entry.shape)")
        try Dequantize.run(type, from: UnsafeRawBufferPointer(rebasing: file.bytes[entry.byteRange]), into: output, tensorName: name)
    }
}
