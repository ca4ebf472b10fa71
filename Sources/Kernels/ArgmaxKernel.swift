import CUDA

/// `argmax_rows` of sampling.cu: the greedy token of each row of fp32 logits.
public struct ArgmaxKernel: Sendable {
    let function: KernelFunction

    public init(library: KernelLibrary) throws {
        function = try library.function("argmax_rows", in: "sampling.cu")
    }

    /// out[r] = argmax of logits row r. logits: [out.count, vocab].
    public func callAsFunction(_ logits: DeviceBuffer<Float>, vocab: Int, into out: DeviceBuffer<Int32>, on stream: CUDAStream) throws {
        guard vocab > 0, logits.count == out.count * vocab else {
            throw CUDAError.invalidArgument("argmax: \(logits.count) logits for \(out.count) rows of \(vocab)")
        }
        guard out.count > 0 else { return }
        try function.launch(grid: Dim3(out.count), block: Dim3(1024), on: stream, logits.pointer, Int32(vocab), out.pointer)
    }
}
