/// Dequantization of GGML tensor data to Float, bit-exact with ggml's reference (`dequantize_row_*`).
///
/// Block layouts (little-endian, packed, 32 elements per block):
/// - Q8_0: f16 scale d, 32 × int8 q;            x = d * q
/// - Q4_0: f16 scale d, 16 bytes of nibbles;    x = d * (q - 8)
/// - Q4_1: f16 scale d, f16 min m, 16 bytes;    x = d * q + m
/// In both Q4 formats byte j holds element j in its low nibble and element j + 16 in its high nibble.
public enum Dequantize {
    /// Dequantizes `data` (whole blocks of `type`) into `output`, whose count must be the element count.
    public static func run(
        _ type: GGUFTensorType, from data: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Float>,
        tensorName: String = "?"
    ) throws {
        precondition(output.count % type.blockSize == 0 && output.count / type.blockSize * type.bytesPerBlock == data.count,
                     "Dequantize.run: \(data.count) bytes of \(type.name) do not hold \(output.count) elements")
        switch type {
        case .f32:
            UnsafeMutableRawBufferPointer(output).copyMemory(from: data)
        case .f16:
            for i in 0..<output.count { output[i] = half(data, 2 * i) }
        case .bf16:
            // bf16 is the high half of a float32.
            for i in 0..<output.count {
                output[i] = Float(bitPattern: UInt32(data.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            }
        case .q8_0:
            forEachBlock(data, output, type) { block, out in
                let d = half(block, 0)
                for j in 0..<32 { out[j] = d * Float(Int8(bitPattern: block[2 + j])) }
            }
        case .q4_0:
            forEachBlock(data, output, type) { block, out in
                let d = half(block, 0)
                for j in 0..<16 {
                    let byte = block[2 + j]
                    out[j] = d * Float(Int(byte & 0x0F) - 8)
                    out[j + 16] = d * Float(Int(byte >> 4) - 8)
                }
            }
        case .q4_1:
            forEachBlock(data, output, type) { block, out in
                let d = half(block, 0)
                let m = half(block, 2)
                for j in 0..<16 {
                    let byte = block[4 + j]
                    out[j] = d * Float(byte & 0x0F) + m
                    out[j + 16] = d * Float(byte >> 4) + m
                }
            }
        default:
            throw ModelError.unsupportedDequantization(type: type, tensor: tensorName)
        }
    }

    /// Calls `body` with each block's bytes and the slice of `output` it fills.
    @inline(__always)
    private static func forEachBlock(
        _ data: UnsafeRawBufferPointer, _ output: UnsafeMutableBufferPointer<Float>, _ type: GGUFTensorType,
        _ body: (UnsafeRawBufferPointer, UnsafeMutableBufferPointer<Float>) -> Void
    ) {
        let blockCount = output.count / type.blockSize
        for b in 0..<blockCount {
            let block = UnsafeRawBufferPointer(rebasing: data[(b * type.bytesPerBlock)..<((b + 1) * type.bytesPerBlock)])
            let out = UnsafeMutableBufferPointer(rebasing: output[(b * type.blockSize)..<((b + 1) * type.blockSize)])
            body(block, out)
        }
    }

    /// The IEEE half at `offset`, widened exactly to Float.
    @inline(__always)
    static func half(_ data: UnsafeRawBufferPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: data.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }
}
