/// A fixed-size, 64-byte aligned array of Floats that the forward pass owns and reuses: weights, KV
/// cache and scratch live in these, so that the hot loop never allocates and kernels take raw pointers.
///
/// A class so that its storage has one owner and a stable address; it is shared between the threads of
/// one kernel call, which each write disjoint ranges (hence `@unchecked Sendable`).
final class FloatBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    /// `count` zeros.
    init(count: Int) {
        precondition(count >= 0, "FloatBuffer: negative count \(count)")
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        pointer = raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
    }

    deinit {
        pointer.deallocate()
    }

    var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }

    /// Elements `range` as a buffer (for `GGUFFile.dequantize(_:into:)`).
    func slice(_ range: Range<Int>) -> UnsafeMutableBufferPointer<Float> {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "FloatBuffer: \(range) outside 0..<\(count)")
        return UnsafeMutableBufferPointer(start: pointer + range.lowerBound, count: range.count)
    }
}
