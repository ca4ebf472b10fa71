/// Exact integer GEMMs, the ground truth for the tensor-core kernels.
public enum IntegerGemm {
    /// C[m, n] = sum_k A[m, k] * B[n, k]. A: [M, K], B: [N, K] (both row-major), C: [M, N].
    /// Exact: |sum| <= K * 128 * 128 fits Int32 for K < 131072.
    public static func s8(a: [Int8], b: [Int8], m: Int, n: Int, k: Int) -> [Int32] {
        precondition(a.count == m * k && b.count == n * k, "IntegerGemm.s8: operand sizes do not match the shape")
        precondition(k < 131_072, "IntegerGemm.s8: K too large for an exact int32 sum")
        var c = [Int32](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                for i in 0..<m {
                    for j in 0..<n {
                        var sum: Int32 = 0
                        for p in 0..<k { sum &+= Int32(a[i * k + p]) * Int32(b[j * k + p]) }
                        c[i * n + j] = sum
                    }
                }
            }
        }
        return c
    }
}
