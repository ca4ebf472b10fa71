import CUDA
import Quant

/// attention_decode.cu: one query token per sequence against its paged KV cache, GQA, split
/// over long contexts and merged exactly.
public struct DecodeAttentionKernel: Sendable {
    struct Variant: Hashable, Sendable { let format: PagedKVCache.Format, headDim: Int, headsPerCTA: Int }
    let functions: KernelVariants<Variant>
    let combine: KernelFunction
    let multiprocessors: Int
    /// Tokens per CTA: at most `ATTN_MAX_SPLIT` of the kernel, at least this.
    static let splitLengths = [512, 256, 128, 64]

    public init(library: KernelLibrary) throws {
        let variants = [PagedKVCache.Format.kv4, .bf16].flatMap { format in
            [64, 128].flatMap { d in (1...4).map { Variant(format: format, headDim: d, headsPerCTA: $0) } }
        }
        functions = try KernelVariants(library: library, source: "attention_decode.cu", keys: variants) {
            "decode_attention_\($0.format.rawValue)_d\($0.headDim)_g\($0.headsPerCTA)"
        }
        combine = try library.function("decode_attention_combine", in: "attention_decode.cu")
        multiprocessors = library.context.device.multiprocessorCount
    }

    /// Query heads per CTA: the largest of 4, 3, 2, 1 that divides the group.
    static func headsPerCTA(group: Int) -> Int { [4, 3, 2, 1].first { group % $0 == 0 }! }

    /// The longest split that still gives every SM two CTAs.
    func splitLength(sequences: Int, ctasPerSequence: Int, maxLength: Int) -> Int {
        Self.splitLengths.first { sequences * ctasPerSequence * ((maxLength + $0 - 1) / $0) >= 2 * multiprocessors }
            ?? Self.splitLengths.last!
    }

    /// Floats of workspace a call with these sizes may need.
    public static func workspaceCount(sequences: Int, qHeads: Int, headDim: Int, maxLength: Int) -> Int {
        let splits = max(1, (maxLength + splitLengths.last! - 1) / splitLengths.last!)
        return splits * sequences * qHeads * (headDim + 2)
    }

    /// - Parameters:
    ///   - q: [sequences, qHeads, headDim] bf16.
    ///   - blockTable: [sequences, maxPages] page ids; lengths: [sequences] tokens cached.
    ///   - maxLength: an upper bound of `lengths` (known to the scheduler), to size the splits.
    ///   - out: [sequences, qHeads, headDim] bf16.
    public func callAsFunction(
        q: DeviceBuffer<BFloat16>, cache: PagedKVCache, blockTable: DeviceBuffer<Int32>, maxPages: Int,
        lengths: DeviceBuffer<Int32>, maxLength: Int, qHeads: Int, softmaxScale: Float,
        workspace: DeviceBuffer<Float>, into out: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        let sequences = lengths.count, d = cache.headDim
        guard sequences > 0, qHeads % cache.kvHeads == 0, q.count == sequences * qHeads * d, out.count == q.count,
              blockTable.count == sequences * maxPages, maxLength <= maxPages * cache.pageSize
        else {
            throw CUDAError.invalidArgument(
                "decode attention: q \(q.count), out \(out.count), table \(blockTable.count) for \(sequences) sequences x \(qHeads) heads x \(d), \(maxPages) pages")
        }
        let group = qHeads / cache.kvHeads, perCTA = Self.headsPerCTA(group: group)
        let ctasPerSequence = cache.kvHeads * group / perCTA
        let split = splitLength(sequences: sequences, ctasPerSequence: ctasPerSequence, maxLength: maxLength)
        let splits = max(1, (maxLength + split - 1) / split)
        let partials = splits * sequences * qHeads
        guard workspace.count >= partials * (d + 2) else {
            throw CUDAError.invalidArgument("decode attention: workspace of \(workspace.count) floats, need \(partials * (d + 2))")
        }
        let partOut = workspace.pointer, partML = workspace.pointer(at: partials * d)
        let function = functions[Variant(format: cache.format, headDim: d, headsPerCTA: perCTA)]
        try function.launch(
            grid: Dim3(ctasPerSequence, sequences, splits), block: Dim3(128), on: stream,
            q.pointer, cache.k.pointer, cache.v.pointer, cache.kParams.pointer, cache.vParams.pointer,
            blockTable.pointer, Int32(maxPages), lengths.pointer, Int32(cache.kvHeads), Int32(group),
            Int32(cache.pageSize), softmaxScale, Int32(split), partOut, partML)
        try combine.launch(
            grid: Dim3(qHeads, sequences), block: Dim3(d), on: stream, partOut, partML, out.pointer, Int32(splits), Int32(d))
    }
}
