import CUDA

/// One layer's paged KV cache on the GPU (attention_decode.cu's layout): `pages` pages of
/// `pageSize` tokens; a page holds every KV head of its tokens.
public struct PagedKVCache: Sendable {
    public enum Format: String, Sendable, Codable {
        /// 4-bit codes + fp16 (scale, zero) per (token, head): DESIGN.md §2.
        case kv4
        /// bf16 values: the baseline.
        case bf16
    }

    public let format: Format
    public let pages: Int, pageSize: Int, kvHeads: Int, headDim: Int
    /// [page][kv_head][pageSize][headDim / 2] bytes (kv4) or [...][headDim] bf16 (bf16).
    public let k: DeviceBuffer<UInt8>, v: DeviceBuffer<UInt8>
    /// [page][kv_head][pageSize] half2 (scale, zero) as 32-bit words; one unused word for bf16.
    public let kParams: DeviceBuffer<UInt32>, vParams: DeviceBuffer<UInt32>

    public init(format: Format, pages: Int, pageSize: Int, kvHeads: Int, headDim: Int, context: CUDAContext) throws {
        guard pages > 0, pageSize > 0, kvHeads > 0, headDim == 64 || headDim == 128 else {
            throw CUDAError.invalidArgument("KV cache: \(pages) pages of \(pageSize) tokens, \(kvHeads) heads, head_dim \(headDim) (64 or 128)")
        }
        self.format = format
        self.pages = pages
        self.pageSize = pageSize
        self.kvHeads = kvHeads
        self.headDim = headDim
        let rows = pages * kvHeads * pageSize
        let rowBytes = format == .kv4 ? headDim / 2 : headDim * 2
        k = try context.allocate(UInt8.self, count: rows * rowBytes)
        v = try context.allocate(UInt8.self, count: rows * rowBytes)
        kParams = try context.allocate(UInt32.self, count: format == .kv4 ? rows : 1)
        vParams = try context.allocate(UInt32.self, count: format == .kv4 ? rows : 1)
    }

    /// Bytes of K and V together that one token of one KV head occupies.
    public var bytesPerTokenHead: Int { Self.bytesPerTokenHead(format: format, headDim: headDim) }

    public static func bytesPerTokenHead(format: Format, headDim: Int) -> Int {
        format == .kv4 ? 2 * (headDim / 2 + 4) : 2 * headDim * 2
    }
}
