import CPUReference
import Quant
import Testing

@Suite struct KV4Tests {
    @Test(arguments: [64, 128])
    func roundTripIsWithinHalfAStep(headDim: Int) {
        var random = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        let x = (0..<headDim).map { _ in Float.random(in: -3...5, using: &random) }
        var codes = [UInt8](repeating: 0, count: headDim / 2)
        var back = [Float](repeating: 0, count: headDim)
        let (scale, zero) = x.withUnsafeBufferPointer { xs in codes.withUnsafeMutableBufferPointer { KV4.quantize(xs, into: $0) } }
        codes.withUnsafeBufferPointer { cs in back.withUnsafeMutableBufferPointer { KV4.dequantize(cs, scale: scale, zero: zero, into: $0) } }
        let s = Float(scale)
        // fp16 rounding of scale and zero can push the maximum one clamp past half a step.
        for i in 0..<headDim { #expect(abs(back[i] - x[i]) <= s / 2 + 16 * s * 1e-3 + abs(x[i]) * 1e-3) }
        #expect(back.min()! <= x.min()! + s)
    }

    @Test func aConstantVectorRoundTripsExactly() {
        let x = [Float](repeating: 0.75, count: 64)  // fp16-representable
        var codes = [UInt8](repeating: 0xFF, count: 32)
        var back = [Float](repeating: 0, count: 64)
        let (scale, zero) = x.withUnsafeBufferPointer { xs in codes.withUnsafeMutableBufferPointer { KV4.quantize(xs, into: $0) } }
        codes.withUnsafeBufferPointer { cs in back.withUnsafeMutableBufferPointer { KV4.dequantize(cs, scale: scale, zero: zero, into: $0) } }
        #expect(scale == 0 && codes.allSatisfy { $0 == 0 } && back == x)
    }
}
