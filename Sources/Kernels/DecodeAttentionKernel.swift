import CUDA
import Quant

/// attention_decode.cu: one query token per sequence against its paged KV cache, GQA, split
/// over long contexts and merged exactly.
public struct DecodeAttentionKernel: Sendable {
    struct Variant: Hashable, Sendable { let format: PagedKVCache.Format, headDim: Int, headsPerCTA: Int }
    let functions: KernelVariants<Variant>
    /// KV4 on tensor cores, by head dimension and heads per CTA (8: up to 8, 16: 9 to 16): the
    /// whole GQA group (up to 16 heads) per CTA.
    struct TensorCoreVariant: Hashable, Sendable { let headDim: Int, heads: Int }
    let tensorCoreKV4: KernelVariants<TensorCoreVariant>
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
        let tensorCoreVariants = [64, 128].flatMap { d in [8, 16].map { TensorCoreVariant(headDim: d, heads: $0) } }
        tensorCoreKV4 = try KernelVariants(library: library, source: "attention_decode.cu", keys: tensorCoreVariants) {
            "decode_attention_kv4_mma_d\($0.headDim)_h\($0.heads)"
        }
        combine = try library.function("decode_attention_combine", in: "attention_decode.cu")
        multiprocessors = library.context.device.multiprocessorCount
    }

    /// Query heads per CTA: the largest of 4, 3, 2, 1 that divides the group (CUDA-core kernels).
    static func headsPerCTA(group: Int) -> Int { [4, 3, 2, 1].first { group % $0 == 0 }! }

    /// Whether KV4 runs on the tensor-core kernel: groups of up to 16 heads, or multiples of 16.
    static func usesTensorCores(format: PagedKVCache.Format, group: Int) -> Bool {
        format == .kv4 && (group <= 16 || group % 16 == 0)
    }

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
        let group = qHeads / cache.kvHeads
        let tensorCores = Self.usesTensorCores(format: cache.format, group: group)
        let perCTA = tensorCores ? min(group, 16) : Self.headsPerCTA(group: group)
        let ctasPerSequence = cache.kvHeads * group / perCTA
        let split = splitLength(sequences: sequences, ctasPerSequence: ctasPerSequence, maxLength: maxLength)
        let splits = max(1, (maxLength + split - 1) / split)
        let partials = splits * sequences * qHeads
        guard workspace.count >= partials * (d + 2) else {
            throw CUDAError.invalidArgument("decode attention: workspace of \(workspace.count) floats, need \(partials * (d + 2))")
        }
        let partOut = workspace.pointer, partML = workspace.pointer(at: partials * d)
        let function = tensorCores
            ? tensorCoreKV4[TensorCoreVariant(headDim: d, heads: perCTA > 8 ? 16 : 8)]
            : functions[Variant(format: cache.format, headDim: d, headsPerCTA: perCTA)]
        try function.launch(
            grid: Dim3(ctasPerSequence, sequences, splits), block: Dim3(128), on: stream,
            q.pointer, cache.k.pointer, cache.v.pointer, cache.kParams.pointer, cache.vParams.pointer,
            blockTable.pointer, Int32(maxPages), lengths.pointer, Int32(cache.kvHeads), Int32(group),
            Int32(cache.pageSize), softmaxScale, Int32(split), partOut, partML)
        try combine.launch(
            grid: Dim3(qHeads, sequences), block: Dim3(d), on: stream, partOut, partML, out.pointer, Int32(splits), Int32(d))
    }
}
