/// The factor GPTQ's column updates need: the upper-triangular U with Uᵀ·U = H⁻¹, for a
/// symmetric positive definite H ([k, k], row-major, Double).
///
/// One Cholesky factorization and one triangular inverse, no explicit H⁻¹: with J the
/// order-reversing permutation, Cholesky of J·H·J = L·Lᵀ gives H = V·Vᵀ with V = J·L·J upper
/// triangular, so H⁻¹ = (V⁻¹)ᵀ·V⁻¹ and U = V⁻¹ = J·L⁻¹·J (positive diagonal, hence the same
/// factor as GPTQ's cholesky(cholesky_inverse(cholesky(H)), upper=True)).
enum CholeskyInverse {
    enum Failure: Error { case notPositiveDefinite(pivot: Int) }

    static func upperFactorOfInverse(_ h: [Double], k: Int) throws(Failure) -> [Double] {
        precondition(h.count == k * k)
        // a = J·H·J, then a = L (lower, in place), a column at a time: the diagonal entry, then
        // every entry below it in parallel (each is one contiguous dot product of two rows).
        var a = [Double](repeating: 0, count: k * k)
        for i in 0..<k {
            for j in 0..<k { a[i * k + j] = h[(k - 1 - i) * k + (k - 1 - j)] }
        }
        var failedPivot: Int?
        a.withUnsafeMutableBufferPointer { buffer in
            let l = SharedBuffer(buffer)
            let chunk = 32
            for j in 0..<k {
                let pivot = l[j * k + j] - dot(l.base + j * k, l.base + j * k, j)
                guard pivot > 0, pivot.isFinite else { failedPivot = k - 1 - j; return }
                let d = pivot.squareRoot()
                l[j * k + j] = d
                let below = k - j - 1
                parallelFor((below + chunk - 1) / chunk) { c in
                    for i in (j + 1 + c * chunk)..<min(j + 1 + (c + 1) * chunk, k) {
                        l[i * k + j] = (l[i * k + j] - dot(l.base + i * k, l.base + j * k, j)) / d
                    }
                }
            }
            for i in 0..<k { for j in (i + 1)..<max(i + 1, k) { l[i * k + j] = 0 } }
        }
        if let pivot = failedPivot { throw .notPositiveDefinite(pivot: pivot) }
        // m = L⁻¹, one column at a time (forward substitution; columns are independent). The
        // column is written into row c of mt = (L⁻¹)ᵀ so every write is contiguous, and each
        // step is a dot product of row i of L with the column so far.
        var mt = [Double](repeating: 0, count: k * k)
        a.withUnsafeBufferPointer { l in
            mt.withUnsafeMutableBufferPointer { out in
                let out = SharedBuffer(out), l = SharedBuffer(UnsafeMutableBufferPointer(mutating: l))
                parallelFor(k) { c in
                    let m = out.base + c * k  // m[i] = (L⁻¹)[i, c]; zero above the diagonal
                    m[c] = 1 / l[c * k + c]
                    for i in (c + 1)..<max(c + 1, k) {
                        m[i] = -dot(l.base + i * k + c, m + c, i - c) / l[i * k + i]
                    }
                }
            }
        }
        // U = J·L⁻¹·J: U[r, s] = (L⁻¹)[k-1-r, k-1-s] = mt[k-1-s, k-1-r].
        var u = [Double](repeating: 0, count: k * k)
        for r in 0..<k {
            for s in r..<k { u[r * k + s] = mt[(k - 1 - s) * k + (k - 1 - r)] }
        }
        return u
    }
}
