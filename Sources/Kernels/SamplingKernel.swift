import CUDA

/// `apply_penalties` and `sample_rows` of sampling.cu: the whole of SamplingParameters on the GPU,
/// on raw per-row buffers (GPUBackend's DeviceSampler stages them from the requests).
public struct SamplingKernel: Sendable {
    let penalties: KernelFunction, sample: KernelFunction

    public init(library: KernelLibrary) throws {
        penalties = try library.function("apply_penalties", in: "sampling.cu")
        sample = try library.function("sample_rows", in: "sampling.cu")
    }

    /// Applies `entryCount` penalty entries ([row, token, count] triples in `entries`, with
    /// [repetition, frequency, presence] per row in `penaltyParameters`) to `logits` in place, then
    /// samples each row. `parameters`: [temperature, top-p, min-p, uniform] per row; `topKs`: top-k
    /// per row (0: off). Writes each row's token and its log-probability under the penalized logits.
    public func callAsFunction(
        logits: DeviceBuffer<Float>, vocab: Int, parameters: DeviceBuffer<Float>, topKs: DeviceBuffer<Int32>,
        entries: DeviceBuffer<Int32>, entryCount: Int, penaltyParameters: DeviceBuffer<Float>,
        tokens: DeviceBuffer<Int32>, logprobs: DeviceBuffer<Float>, on stream: CUDAStream
    ) throws {
        let rows = tokens.count
        guard vocab > 0, logits.count == rows * vocab, parameters.count >= 4 * rows, topKs.count >= rows,
              logprobs.count == rows, penaltyParameters.count >= 3 * rows, entries.count >= 3 * entryCount
        else {
            throw CUDAError.invalidArgument("sampling: buffers for \(rows) rows of \(vocab) logits and \(entryCount) penalty entries do not match")
        }
        guard rows > 0 else { return }
        if entryCount > 0 {
            try penalties.launch(
                grid: Dim3((entryCount + 255) / 256), block: Dim3(256), on: stream,
                logits.pointer, Int32(vocab), entries.pointer, penaltyParameters.pointer, Int32(entryCount))
        }
        try sample.launch(
            grid: Dim3(rows), block: Dim3(1024), on: stream,
            logits.pointer, Int32(vocab), parameters.pointer, topKs.pointer, tokens.pointer, logprobs.pointer)
    }
}
