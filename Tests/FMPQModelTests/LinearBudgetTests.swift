import CPUBackend
import FMPQModel
import Foundation
import Model
import Quant
import Testing

/// Per-linear INT8 budgets (`QuantizeSettings.linearBudgets`, `comet quantize --int8-share-of`):
/// the named kind of linear gets its own budget in every layer, the others keep the recipe's, the
/// manifest records the overrides, and the checkpoint runs.
@Suite struct LinearBudgetTests {
    @Test func aLinearKindTakesItsOwnBudgetInEveryLayer() throws {
        var random = SystemRandomNumberGenerator()
        // Blocks of 64: dim 256 is 4 blocks (qkv, gate_up inputs), heads x headDim 256 (o), ffn 640 is 10 (down).
        let config = ModelConfig(
            vocabularySize: 97, dim: 256, layerCount: 3, headCount: 4, kvHeadCount: 2, headDim: 64, ffnDim: 640,
            ropeBase: 10000, contextLength: 64)
        let model = try LlamaCPUModel(weights: RandomLlamaWeights(config: config, random: &random), threads: 1)
        let sequences = (0..<2).map { _ in (0..<24).map { _ in Int32.random(in: 0..<97, using: &random) } }
        let calibration = try Calibrator.calibrate(model: model, sequences: sequences, hessians: false)
        let recipe = FMPQRecipe(budget: .fractionOfBlocks(0.25), blockSize: 64, weightMethod: .rtn)
        let budgets: [LinearSlot: INT8Budget] = [.gateUp: .fractionOfBlocks(1), .qkv: .fractionOfBlocks(0)]
        let checkpoint = try ModelQuantizer.quantize(
            model: model, calibration: calibration, settings: QuantizeSettings(recipe: recipe, linearBudgets: budgets),
            modelFile: "random", modelFileSHA256: nil, source: CalibrationSource(text: "random tokens"))

        for layer in 0..<config.layerCount {
            let int8 = { (slot: LinearSlot) in checkpoint.layers[slot.name(layer: layer)]?.int8Blocks }
            #expect(int8(.gateUp) == 4, "layer \(layer): gate_up all INT8")
            #expect(int8(.qkv) == 0, "layer \(layer): qkv all INT4")
            #expect(int8(.attentionOutput) == 1, "layer \(layer): o keeps the recipe's 25% of 4 blocks")
            #expect(int8(.down) == 2, "layer \(layer): down keeps the recipe's 25% of 10 blocks, rounded down")
        }
        #expect(checkpoint.calibration.linearBudgets == ["gate_up": .fractionOfBlocks(1), "qkv": .fractionOfBlocks(0)])
        #expect(checkpoint.calibration.recipe == recipe)

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("comet-budgets-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try checkpoint.write(to: folder.appendingPathComponent("ckpt").path)
        let loaded = try QuantizedCheckpoint.load(from: folder.appendingPathComponent("ckpt").path)
        // (Not `loaded == checkpoint`: JSON reads the config's 10000.0 back as an integer.)
        #expect(loaded.calibration == checkpoint.calibration && loaded.layers == checkpoint.layers)

        // The all-A8 linear runs: the quantized model's logits are finite and near the float model's.
        let prompt = sequences[0].prefix(9).map { $0 }
        let float = try TensorParallelTests.wholeLogits(model, prompt: prompt)
        try QuantizedModelHooks.install(on: model, checkpoint: loaded, evaluation: QuantizedEvaluation(loaded))
        let quantized = try TensorParallelTests.wholeLogits(model, prompt: prompt)
        model.hooks = nil
        let difference = TensorParallelTests.relativeDifference(float, quantized)
        #expect(quantized.allSatisfy(\.isFinite) && difference > 1e-4 && difference < 0.5, "relative difference \(difference)")
    }

    @Test func checkpointsWithoutOverridesRecordNone() throws {
        let settings = CheckpointManifest.CalibrationSettings(text: "t", tokens: 1, contextLength: 1)
        let json = try JSONEncoder().encode(settings)
        #expect(!String(decoding: json, as: UTF8.self).contains("linearBudgets"))
        #expect(try JSONDecoder().decode(CheckpointManifest.CalibrationSettings.self, from: json).linearBudgets == nil)
    }
}
