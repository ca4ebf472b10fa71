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
        // a = J·H·J, then a = L (lower, in place, left-looking dot-product form).
        var a = [Double](repeating: 0, count: k * k)
        for i in 0..<k {
            for j in 0..<k { a[i * k + j] = h[(k - 1 - i) * k + (k - 1 - j)] }
        }
        for i in 0..<k {
            for j in 0...i {
                var s = a[i * k + j]
                for p in 0..<j { s -= a[i * k + p] * a[j * k + p] }
                if i == j {
                    guard s > 0, s.isFinite else { throw .notPositiveDefinite(pivot: k - 1 - i) }
                    a[i * k + i] = s.squareRoot()
                } else {
                    a[i * k + j] = s / a[j * k + j]
                }
            }
            for j in (i + 1)..<max(i + 1, k) { a[i * k + j] = 0 }
        }
        // m = L⁻¹, one column at a time (forward substitution; columns are independent). The
        // column is written into row c of mt = (L⁻¹)ᵀ so every write is contiguous.
        var mt = [Double](repeating: 0, count: k * k)
        a.withUnsafeBufferPointer { l in
            mt.withUnsafeMutableBufferPointer { out in
                let out = SharedBuffer(out), l = SharedBuffer(UnsafeMutableBufferPointer(mutating: l))
                parallelFor(k) { c in
                    let m = out.base + c * k  // m[i] = (L⁻¹)[i, c]; zero above the diagonal
                    m[c] = 1 / l[c * k + c]
                    for i in (c + 1)..<max(c + 1, k) {
                        var s = 0.0
                        for p in c..<i { s -= l[i * k + p] * m[p] }
                        m[i] = s / l[i * k + i]
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
