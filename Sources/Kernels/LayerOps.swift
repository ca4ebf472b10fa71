import CUDA
import Quant

/// The row and element-wise kernels of layer_ops.cu: embedding gather, RMSNorm (with the
/// residual add before it fused) and SwiGLU to bf16, and a bias add. Each checks its buffers
/// against the sizes it is given.
public struct LayerOps: Sendable {
    let gather: KernelFunction, norm: KernelFunction, swiGLU: KernelFunction, bias: KernelFunction
    /// `LAYER_THREADS` of layer_ops.cu.
    static let threads = 256

    public init(library: KernelLibrary) throws {
        func load(_ name: String) throws -> KernelFunction { try library.function(name, in: "layer_ops.cu") }
        gather = try load("embedding_gather")
        norm = try load("rmsnorm_rows")
        swiGLU = try load("swiglu_rows")
        bias = try load("bias_add")
    }

    /// out[t] = table[ids[t]]. table: [vocab, dim] bf16; out: [ids.count, dim]. Ids must be in range
    /// (the caller checks them on the host: a kernel cannot report a bad id).
    public func embeddingGather(
        table: DeviceBuffer<BFloat16>, ids: DeviceBuffer<Int32>, dim: Int, into out: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        try require(dim % 8 == 0 && table.count % dim == 0 && out.count == ids.count * dim,
                    "embedding gather: table \(table.count), \(ids.count) ids, dim \(dim), out \(out.count)")
        guard ids.count > 0 else { return }
        try gather.launch(grid: Dim3(ids.count), block: Dim3(Self.threads), on: stream, table.pointer, ids.pointer, Int32(dim), out.pointer)
    }

    /// out[r] = RMSNorm(x[rows[r]]) * gamma, or with `residual` RMSNorm(x[rows[r]] + added[rows[r]]),
    /// the sum also written to the residual's `sum`. x: [tokens, dim]; out: [rows.count, dim]. Rows
    /// must be below x's row count (checked by the caller on the host).
    public func rmsNorm(
        _ x: DeviceBuffer<BFloat16>, rows: DeviceBuffer<Int32>, gamma: DeviceBuffer<Float>, eps: Float,
        adding residual: FusedResidualAdd? = nil, into out: DeviceBuffer<BFloat16>, on stream: CUDAStream
    ) throws {
        let dim = gamma.count
        try require(dim > 0 && x.count % dim == 0 && out.count == rows.count * dim,
                    "rmsnorm: x \(x.count), \(rows.count) rows, dim \(dim), out \(out.count)")
        let add = try FusedResidualAdd.kernelPointers(residual, for: x)
        guard rows.count > 0 else { return }
        try norm.launch(grid: Dim3(rows.count), block: Dim3(Self.threads), on: stream,
                        x.pointer, add.added, add.sum, rows.pointer, gamma.pointer, eps, Int32(dim), out.pointer)
    }

    /// out[t, f] = silu(gateUp[t, f]) * gateUp[t, F + f]. gateUp: [tokens, 2F]; out: [tokens, F].
    public func swiGLU(_ gateUp: DeviceBuffer<BFloat16>, hidden f: Int, into out: DeviceBuffer<BFloat16>, on stream: CUDAStream) throws {
        try require(f > 0 && gateUp.count % (2 * f) == 0 && out.count == gateUp.count / 2, "swiglu: gate_up \(gateUp.count), F \(f), out \(out.count)")
        let tokens = out.count / f
        guard tokens > 0 else { return }
        try swiGLU.launch(grid: Dim3((out.count + Self.threads - 1) / Self.threads), block: Dim3(Self.threads), on: stream,
                          gateUp.pointer, Int32(f), Int64(out.count), out.pointer)
    }

    /// y[t] += bias. y: [tokens, bias.count].
    public func biasAdd(_ y: DeviceBuffer<BFloat16>, bias b: DeviceBuffer<Float>, on stream: CUDAStream) throws {
        try require(b.count > 0 && y.count % b.count == 0, "bias add: y \(y.count), bias \(b.count)")
        let tokens = y.count / b.count
        guard tokens > 0 else { return }
        try bias.launch(grid: Dim3(tokens), block: Dim3(Self.threads), on: stream, y.pointer, b.pointer, Int32(b.count))
    }

    private func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw CUDAError.invalidArgument(message()) }
    }
}

/// The residual add that precedes an RMSNorm, fused into the norm's kernel (layer_ops.cu's
/// `rmsnorm_rows`, fmpq_quantize.cu's `rmsnorm_quantize`): the norm reads x + added, the fp32 sum
/// rounded to bf16 once, and writes that sum to `sum`, which must not be x
/// (the kernels' blocks of one row all read x while one of them writes the sum).
public struct FusedResidualAdd: Sendable {
    public let added: DeviceBuffer<BFloat16>
    public let sum: DeviceBuffer<BFloat16>

    public init(added: DeviceBuffer<BFloat16>, sum: DeviceBuffer<BFloat16>) {
        self.added = added
        self.sum = sum
    }

    /// The kernels' (added, sum) arguments for a norm of x: null pointers without an add. Throws
    /// where the add's buffers do not match x.
    static func kernelPointers(_ residual: FusedResidualAdd?, for x: DeviceBuffer<BFloat16>) throws -> (added: DevicePointer, sum: DevicePointer) {
        guard let r = residual else { return (DevicePointer(0), DevicePointer(0)) }
        guard r.added.count == x.count, r.sum.count == x.count, r.sum.pointer != x.pointer else {
            throw CUDAError.invalidArgument("fused residual add: x \(x.count), added \(r.added.count), sum \(r.sum.count) (sum must be another buffer than x)")
        }
        return (r.added.pointer, r.sum.pointer)
    }
}
