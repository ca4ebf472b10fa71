import CPUBackend
import Quant

/// What calibration learned about one linear layer's input: the outlier statistics (attention
/// sink excluded) and the GPTQ Hessian (sink included, see `GPTQHessian`).
public struct LinearCalibration: Sendable {
    public var statistics: CalibrationStatistics
    public var hessian: GPTQHessian?
}

/// The calibration of a whole model: one `LinearCalibration` per (layer, `LinearSlot`).
///
/// NOTES: GPTQ here sees the inputs of the FP model (every earlier layer unquantized), not the
/// inputs of already-quantized earlier layers as GPTQ's sequential mode does. That keeps one
/// calibration pass valid for every recipe of the accuracy table (the Hessians do not depend on
/// the permutation, the budget or the weight method), at the cost of not compensating the
/// error that earlier layers add.
public struct ModelCalibration: Sendable {
    /// [layer][slot.rawValue]
    public var layers: [[LinearCalibration]]
    /// [layer]: K after RoPE, per channel of kvHeads * headDim (attention sink excluded): what
    /// KV4 quantizes, and what `KeySmoothing` flattens.
    public var keys: [CalibrationStatistics]
    /// [layer]: V, per channel of kvHeads * headDim (attention sink excluded).
    public var values: [CalibrationStatistics]
    /// Tokens run through the model (sink rows included).
    public var tokens: Int
    /// Tokens per calibration sequence.
    public var contextLength: Int

    public subscript(layer: Int, slot: LinearSlot) -> LinearCalibration { layers[layer][slot.rawValue] }
}

/// Runs the model over calibration sequences and records every linear's input statistics
/// through `ForwardHooks`; the model's own fp32 linears still run (the observer returns false).
public final class Calibrator: ForwardHooks {
    private var layers: [[LinearCalibration]]
    private var keys: [CalibrationStatistics]
    private var values: [CalibrationStatistics]
    private let collectHessians: Bool

    /// Hessians cost K² doubles per linear (SmolLM2: about 800 MB in all) and K² multiply-adds
    /// per token; RTN-only quantization does not need them.
    public init(model: LlamaCPUModel, hessians: Bool = true) {
        collectHessians = hessians
        layers = (0..<model.config.layerCount).map { _ in
            LinearSlot.allCases.map { slot in
                let k = model.linearShape(slot).inDim
                return LinearCalibration(statistics: CalibrationStatistics(channels: k), hessian: hessians ? GPTQHessian(channels: k) : nil)
            }
        }
        let kvDim = model.config.kvHeadCount * model.config.headDim
        keys = (0..<model.config.layerCount).map { _ in CalibrationStatistics(channels: kvDim) }
        values = keys
    }

    public func linear(
        layer: Int, slot: LinearSlot, x: UnsafePointer<Float>, tokens: Int, inDim: Int, outDim: Int,
        firstPosition: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool
    ) -> Bool {
        let rows = Array(UnsafeBufferPointer(start: x, count: tokens * inDim))
        let positions = (0..<tokens).map { Int32(firstPosition + $0) }
        // Shapes come from the model itself, so these cannot fail.
        try! layers[layer][slot.rawValue].statistics.add(rows, positions: positions)
        if collectHessians { try! layers[layer][slot.rawValue].hessian!.add(rows, tokens: tokens) }
        return false
    }

    public func keysValues(
        layer: Int, keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, rowStride: Int, tokens: Int, firstPosition: Int
    ) {
        let kvDim = self.keys[layer].channels
        let positions = (0..<tokens).map { Int32(firstPosition + $0) }
        for (base, statistics) in [(keys, \Calibrator.keys), (values, \Calibrator.values)] {
            var rows = [Float](repeating: 0, count: tokens * kvDim)
            for t in 0..<tokens { for c in 0..<kvDim { rows[t * kvDim + c] = base[t * rowStride + c] } }
            // Shapes come from the model itself, so this cannot fail.
            try! self[keyPath: statistics][layer].add(rows, positions: positions)
        }
    }

    /// Runs every sequence (each from position 0, a fresh cache) and returns what was seen.
    /// `progress(done, total)` follows each sequence.
    public static func calibrate(
        model: LlamaCPUModel, sequences: [[Int32]], hessians: Bool = true, progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> ModelCalibration {
        let calibrator = Calibrator(model: model, hessians: hessians)
        let previous = model.hooks
        model.hooks = calibrator
        defer { model.hooks = previous }
        let longest = sequences.map(\.count).max() ?? 1
        let cache = model.makeCache(capacity: max(longest, 1))
        var logits: [Float] = []
        for (i, sequence) in sequences.enumerated() {
            cache.reset()
            try model.forward(sequence, at: 0, cache: cache, logits: &logits, for: .last)
            progress(i + 1, sequences.count)
        }
        return ModelCalibration(layers: calibrator.layers, keys: calibrator.keys, values: calibrator.values, tokens: sequences.reduce(0) { $0 + $1.count }, contextLength: longest)
    }

    /// `count` windows of `length` tokens spread evenly over `tokens` (so a calibration of a few
    /// sequences samples the whole split, not only its first book).
    public static func sequences(from tokens: [Int32], count: Int, length: Int) -> [[Int32]] {
        guard count > 0, length > 0, tokens.count >= length else { return tokens.isEmpty ? [] : [tokens] }
        let room = tokens.count - length
        return (0..<count).map { i in
            let start = count == 1 ? 0 : room * i / (count - 1)
            return Array(tokens[start..<(start + length)])
        }
    }
}
