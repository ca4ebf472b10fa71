import Glibc
import CPUBackend
import Quant

/// The W8A8 baseline of the accuracy table, as SmoothQuant (Xiao et al., 2023) runs it: INT8
/// weights with one scale per output channel (RTN), INT8 activations with one dynamic scale per
/// token, and per-input-channel smoothing that moves activation outliers into the weights.
///
/// Smoothing s_j = max|x_j|^alpha / max|W_j|^(1-alpha) (calibration abs-max, sink excluded;
/// weight abs-max over the input column) divides the activations and multiplies the weight
/// columns. Every linear's input is foldable into what produces it (qkv and gate/up: the norm
/// weights; o: the v rows; down: the up rows), so dividing at run time here is the folded
/// model's arithmetic; the fp32 weights are never written out, this is an evaluation only.
public final class SmoothQuantHooks: ForwardHooks {
    /// One linear: 1/s per input channel and the dequantized INT8 weights W·diag(s), [outDim, inDim].
    struct Linear {
        var inverseSmoothing: [Float]
        var weights: [Float]
    }

    private let linears: [[Linear]]
    private unowned let model: LlamaCPUModel
    private var prepared: [Float] = []

    public init(model: LlamaCPUModel, calibration: ModelCalibration, alpha: Double) throws {
        guard (0...1).contains(alpha) else { throw QuantError.shapeMismatch("SmoothQuant alpha \(alpha) is outside 0...1") }
        self.model = model
        linears = (0..<model.config.layerCount).map { layer in
            LinearSlot.allCases.map { slot in
                let (k, n) = model.linearShape(slot)
                var w = model.linearWeights(layer: layer, slot: slot)
                let activationMax = calibration[layer, slot].statistics.absMax
                var weightMax = [Float](repeating: 0, count: k)
                for row in 0..<n { for j in 0..<k { weightMax[j] = max(weightMax[j], abs(w[row * k + j])) } }
                // 1e-5 floors keep a dead channel's factor finite (SmoothQuant clamps the same way).
                let s = (0..<k).map { j in
                    Float(pow(Double(max(activationMax[j], 1e-5)), alpha) / pow(Double(max(weightMax[j], 1e-5)), 1 - alpha))
                }
                for row in 0..<n {
                    for j in 0..<k { w[row * k + j] *= s[j] }
                    Self.roundTrip(&w[(row * k)..<((row + 1) * k)])
                }
                return Linear(inverseSmoothing: s.map { 1 / $0 }, weights: w)
            }
        }
    }

    public func linear(
        layer: Int, slot: LinearSlot, x: UnsafePointer<Float>, tokens: Int, inDim: Int, outDim: Int,
        firstPosition: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool
    ) -> Bool {
        let linear = linears[layer][slot.rawValue]
        if prepared.count < tokens * inDim { prepared = [Float](repeating: 0, count: tokens * inDim) }
        for t in 0..<tokens {
            for j in 0..<inDim { prepared[t * inDim + j] = x[t * inDim + j] * linear.inverseSmoothing[j] }
            Self.roundTrip(&prepared[(t * inDim)..<((t + 1) * inDim)])
        }
        prepared.withUnsafeBufferPointer { xq in
            linear.weights.withUnsafeBufferPointer { w in
                model.matmul(xq.baseAddress!, tokens: tokens, w.baseAddress!, inDim: inDim, outDim: outDim, y, accumulate: accumulate)
            }
        }
        return true
    }

    /// Symmetric INT8 with one scale over the whole slice (a weight row or a token), quantized
    /// and dequantized in place, as `SymmetricQuantizer` rounds.
    static func roundTrip(_ values: inout ArraySlice<Float>) {
        var absmax: Float = 0
        for v in values { absmax = max(absmax, abs(v)) }
        let scale = SymmetricQuantizer.scale(absmax: absmax, bits: 8)
        for i in values.indices { values[i] = Float(SymmetricQuantizer.code(values[i], scale: scale, bits: 8)) * scale }
    }
}
