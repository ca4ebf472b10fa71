import CUDA
import Engine
import FMPQModel
import Kernels
import Model
import Quant

/// What the commands and benchmarks run on the GPU: one `GPUModelRunner`, or a
/// `TensorParallelRunner` over several GPUs; both take steps from the engine.
public protocol GPURunner: ModelRunner {
    /// Sets every byte of the KV cache (benchmarks: decode at a length without its prefill).
    func fillKVCache(byte: UInt8) throws
}

extension GPUModelRunner: GPURunner {}
extension TensorParallelRunner: GPURunner {}

/// Which weights each rank loads: rank `shard.rank`'s share of one model.
public enum GPUWeightsPlan: Sendable {
    /// An FMPQ checkpoint (quantized for a multiple of the rank count when it is over 1) with
    /// the float tensors of its base model.
    case checkpoint(QuantizedCheckpoint, base: any LlamaWeightSource)
    /// A float model in bf16.
    case bf16(any LlamaWeightSource)
    /// Random weights of a shape (speed only; each rank's from its own seed).
    case synthetic(ModelConfig, quantized: Bool)

    public var config: ModelConfig {
        switch self {
        case let .checkpoint(_, base): base.config
        case let .bf16(source): source.config
        case let .synthetic(config, _): config
        }
    }

    /// Rank `shard.rank`'s weights on `context`.
    public func load(_ shard: TensorParallelShard, context: CUDAContext) throws -> GPUModelWeights {
        switch self {
        case let .checkpoint(checkpoint, base):
            return try GPUModelWeights(
                checkpoint: checkpoint.sharded(shard, config: base.config), base: ShardedWeightSource(base, shard: shard), context: context)
        case let .bf16(source):
            return try GPUModelWeights(bf16: ShardedWeightSource(source, shard: shard), context: context)
        case let .synthetic(config, quantized):
            return try GPUModelWeights.synthetic(
                config: shard.sharded(config), quantized: quantized, seed: 1 + UInt64(shard.rank), context: context)
        }
    }

    /// The runner for these weights on `libraries` (one per GPU, in rank order): a plain runner on
    /// one GPU, tensor parallelism over NCCL on several. cuBLASLt (and NCCL, for several GPUs)
    /// are loaded from `search`.
    public func runner(libraries: [KernelLibrary], search: LibrarySearch, options: GPURunnerOptions) throws -> any GPURunner {
        guard libraries.count > 1 else {
            let context = libraries[0].context
            return try GPUModelRunner(weights: load(.whole, context: context), options: options, library: libraries[0],
                                      blas: CuBLASLt.load(search: search, context: context))
        }
        return try TensorParallelRunner(
            config: config, libraries: libraries, nccl: NCCL.load(search: search), search: search, options: options
        ) { shard, context in
            try load(shard, context: context)
        }
    }
}
