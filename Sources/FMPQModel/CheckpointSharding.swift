import CPUBackend
import Model
import Quant

extension QuantizedCheckpoint {
    /// Rank `shard.rank`'s share of this checkpoint of a model of `config`: every linear cut as
    /// `TensorParallelShard` describes (column-parallel qkv and gate_up keep the rank's output rows
    /// under the whole layer's permutation; row-parallel o and down keep the rank's blocks with its
    /// own permutation), and the config of the shard in `model`. It loads and runs like any
    /// checkpoint of the shard's config (`QuantizedModelHooks`, `GPUModelWeights`).
    ///
    /// Throws when o or down were not quantized for a multiple of `shard.count` ranks
    /// (`QuantizeSettings.tensorParallel`), or the checkpoint uses K smoothing.
    public func sharded(_ shard: TensorParallelShard, config: ModelConfig) throws -> QuantizedCheckpoint {
        guard shard.count > 1 else { return self }
        let local = try shard.sharded(config)
        guard ModelQuantizer.sameConfig(model, ModelQuantizer.configJSON(config)) else {
            throw QuantError.shapeMismatch("the checkpoint was made for another model config (\(model)), this model is \(ModelQuantizer.configJSON(config))")
        }
        guard !kvCache.keySmoothing else {
            throw QuantError.invalidLayout("tensor parallelism does not take checkpoints with K smoothing (quantize without it)")
        }
        var out = QuantizedCheckpoint(model: ModelQuantizer.configJSON(local), tokenizer: tokenizer, calibration: calibration, kvCache: kvCache)
        var linearTensors = Set<String>()
        for l in 0..<config.layerCount {
            for slot in LinearSlot.allCases {
                let name = slot.name(layer: l)
                guard let record = layers[name] else { throw QuantError.shapeMismatch("no linear layer \(name) in the checkpoint") }
                linearTensors.formUnion([record.weights, record.scales, record.permutation])
                let (weights, permutation) = try linear(name)
                let cut: (Int4Weights, FMPQPermutation)
                switch slot {
                case .qkv: cut = (try weights.rows(shard.qkvRows(config)), permutation)
                case .gateUp: cut = (try weights.rows(shard.gateUpRows(config)), permutation)
                case .attentionOutput, .down:
                    do {
                        cut = try permutation.rowParallelShard(rank: shard.rank, of: shard.count, weights: weights)
                    } catch {
                        throw QuantError.invalidLayout("\(name): \(error)")
                    }
                }
                try out.addLinear(name, weights: cut.0, permutation: cut.1)
            }
        }
        for (name, tensor) in tensors where !linearTensors.contains(name) { try out.addTensor(name, tensor) }
        return out
    }
}
