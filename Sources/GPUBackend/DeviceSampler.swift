import CUDA
import Kernels
import Sampling

/// Samples a step's rows on the GPU (SamplingKernel) from the logits where the runner left them:
/// the rows' parameters and penalty counts go up (a few bytes per row), tokens and
/// log-probabilities come down, instead of rows x vocab fp32 logits (131 MB at 256 x 128K) and
/// milliseconds of CPU per row. Staging buffers are pinned and sized at init, except the penalty
/// entries, which grow (rarely) to the largest step seen.
public final class DeviceSampler {
    let kernel: SamplingKernel
    let context: CUDAContext
    let maxRows: Int
    /// Per row: [temperature, top-p, min-p, uniform] then, from 4 x maxRows, [repetition, frequency, presence].
    private let floatsHost: PinnedBuffer<Float>, floatsDevice: DeviceBuffer<Float>
    private let topKHost: PinnedBuffer<Int32>, topKDevice: DeviceBuffer<Int32>
    private var entriesHost: PinnedBuffer<Int32>, entriesDevice: DeviceBuffer<Int32>
    private let tokensHost: PinnedBuffer<Int32>, tokensDevice: DeviceBuffer<Int32>
    private let logprobsHost: PinnedBuffer<Float>, logprobsDevice: DeviceBuffer<Float>

    public init(library: KernelLibrary, maxRows: Int) throws {
        kernel = try SamplingKernel(library: library)
        context = library.context
        self.maxRows = maxRows
        floatsHost = try context.allocatePinned(Float.self, count: 7 * maxRows)
        floatsDevice = try context.allocate(Float.self, count: 7 * maxRows)
        topKHost = try context.allocatePinned(Int32.self, count: maxRows)
        topKDevice = try context.allocate(Int32.self, count: maxRows)
        entriesHost = try context.allocatePinned(Int32.self, count: 3 * 64 * maxRows)
        entriesDevice = try context.allocate(Int32.self, count: 3 * 64 * maxRows)
        tokensHost = try context.allocatePinned(Int32.self, count: maxRows)
        tokensDevice = try context.allocate(Int32.self, count: maxRows)
        logprobsHost = try context.allocatePinned(Float.self, count: maxRows)
        logprobsDevice = try context.allocate(Float.self, count: maxRows)
    }

    /// Samples `rows.count` rows of `logits` ([rows, vocab], penalized in place) on `stream` and
    /// waits for the result.
    public func sample(_ logits: DeviceBuffer<Float>, vocab: Int, rows: [SamplingRow], on stream: CUDAStream) throws -> [SampledToken] {
        let n = rows.count
        guard n <= maxRows, logits.count >= n * vocab else {
            throw CUDAError.invalidArgument("device sampling of \(n) rows: room for \(maxRows) rows, \(logits.count / max(vocab, 1)) of logits")
        }
        guard n > 0 else { return [] }
        let entryCount = rows.reduce(0) { $0 + $1.penaltyCounts.count }
        if 3 * entryCount > entriesHost.count {
            entriesHost = try context.allocatePinned(Int32.self, count: 3 * entryCount)
            entriesDevice = try context.allocate(Int32.self, count: 3 * entryCount)
        }
        let f = floatsHost.baseAddress, k = topKHost.baseAddress, e = entriesHost.baseAddress
        var entry = 0
        for (r, row) in rows.enumerated() {
            let p = row.parameters
            (f[4 * r], f[4 * r + 1], f[4 * r + 2], f[4 * r + 3]) = (p.temperature, p.topP, p.minP, row.uniform)
            (f[4 * n + 3 * r], f[4 * n + 3 * r + 1], f[4 * n + 3 * r + 2]) = (p.repetitionPenalty, p.frequencyPenalty, p.presencePenalty)
            k[r] = Int32(clamping: p.topK)
            for (token, count) in row.penaltyCounts {
                (e[3 * entry], e[3 * entry + 1], e[3 * entry + 2]) = (Int32(r), token, count)
                entry += 1
            }
        }
        try context.copy(bytes: 7 * n * 4, fromHost: f, to: floatsDevice.pointer, on: stream)
        try context.copy(bytes: n * 4, fromHost: k, to: topKDevice.pointer, on: stream)
        try context.copy(bytes: 3 * entryCount * 4, fromHost: e, to: entriesDevice.pointer, on: stream)
        try kernel(
            logits: logits.prefix(n * vocab), vocab: vocab, parameters: floatsDevice.prefix(4 * n), topKs: topKDevice.prefix(n),
            entries: entriesDevice, entryCount: entryCount, penaltyParameters: floatsDevice.slice(4 * n, count: 3 * n),
            tokens: tokensDevice.prefix(n), logprobs: logprobsDevice.prefix(n), on: stream)
        try context.copy(bytes: n * 4, from: tokensDevice.pointer, toHost: tokensHost.baseAddress, on: stream)
        try context.copy(bytes: n * 4, from: logprobsDevice.pointer, toHost: logprobsHost.baseAddress, on: stream)
        try stream.synchronize()
        return rows.indices.map { r in
            SampledToken(token: tokensHost.baseAddress[r], logprob: rows[r].wantsLogprob ? logprobsHost.baseAddress[r] : nil)
        }
    }
}
