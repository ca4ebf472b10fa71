import CPUReference
import CUDA
import Quant

/// Fills `buffer` with random contents: `makeTile` draws up to 16 MiB of values on the host,
/// which are uploaded once and repeated across the buffer by device copies. Speed does not
/// depend on the values, only on their not being zeros (which some hardware paths shortcut).
func fillRandom<T: BitwiseCopyable>(
    _ buffer: DeviceBuffer<T>, on stream: CUDAStream, _ makeTile: (Int) -> [T]
) throws {
    let tileCount = min(buffer.count, max(1, (16 << 20) / MemoryLayout<T>.stride))
    let tile = try buffer.context.allocate(T.self, count: tileCount)
    try tile.copy(from: makeTile(tileCount))
    let tileBytes = tileCount * MemoryLayout<T>.stride
    var offset = 0
    while offset < buffer.byteCount {
        let n = min(tileBytes, buffer.byteCount - offset)
        try buffer.context.copy(bytes: n, from: tile.pointer, to: buffer.pointer + DevicePointer(offset), on: stream)
        offset += n
    }
    try stream.synchronize()
}

/// Mean microseconds per call of `launch(i)` (i counts calls, for rotating buffers): the median
/// over `batches` event-timed batches, each long enough (about 5 ms) to dwarf event overhead.
func microsecondsPerCall(on stream: CUDAStream, batches: Int = 5, _ launch: (Int) throws -> Void) throws -> Double {
    var call = 0
    for _ in 0..<3 { try launch(call); call += 1 }
    let probe = try stream.time { try launch(call); call += 1 }
    let perBatch = max(1, min(200, Int(5.0 / max(probe, 1e-3))))
    var times: [Double] = []
    for _ in 0..<batches {
        let ms = try stream.time {
            for _ in 0..<perBatch { try launch(call); call += 1 }
        }
        times.append(ms * 1000 / Double(perBatch))
    }
    times.sort()
    return times[times.count / 2]
}

/// `count` bytes holding random bf16 values in [-1, 1] (little-endian pairs).
func randomBF16Bytes(_ count: Int, using random: inout SplitMix64) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    for i in stride(from: 0, to: count - 1, by: 2) {
        let bits = BFloat16(Float.random(in: -1...1, using: &random)).bits
        out[i] = UInt8(truncatingIfNeeded: bits)
        out[i + 1] = UInt8(truncatingIfNeeded: bits >> 8)
    }
    return out
}
