import Glibc

/// The fp32 kernels of the CPU forward pass. They take raw pointers (row-major, contiguous rows unless a
/// stride is given) so that the forward pass can run them on preallocated buffers without allocating.
///
/// NOTES: the package is built for baseline x86-64 (SSE2, no FMA), so the inner loops use `SIMD8<Float>`
/// multiplies and adds (two SSE registers each) and never `addingProduct`, which would become a call to
/// `fmaf` per lane without hardware FMA. The innermost loops are `@_optimize(speed)`: in debug builds
/// (`swift test`) that inlines the SIMD operators and halves the time of a forward pass on the real model.
enum CPUKernels {
    /// y = x · wᵀ (or y += x · wᵀ with `accumulate`), parallel over blocks of output rows.
    ///
    ///     x: [tokens, inDim] (row stride xStride), w: [outDim, inDim], y: [tokens, outDim] (row stride yStride)
    ///
    /// Each task owns a block of output rows and runs every token through it, so the block's weights
    /// (a few dozen KB) are read from memory once per call and from cache for the other tokens.
    static func matmul(
        _ x: UnsafePointer<Float>, xStride: Int, tokens: Int,
        _ w: UnsafePointer<Float>, inDim: Int, outDim: Int,
        _ y: UnsafeMutablePointer<Float>, yStride: Int, accumulate: Bool = false, parallel: ParallelLoop
    ) {
        // Blocks of a multiple of 4 rows (the micro-kernel's width), enough of them to share among threads.
        let blocks = parallel.chunks(for: (outDim + 3) / 4)
        let rowsPerBlock = ((outDim + blocks - 1) / blocks + 3) / 4 * 4
        let blockCount = (outDim + rowsPerBlock - 1) / rowsPerBlock
        parallel.run(blockCount) { block in
            let first = block * rowsPerBlock
            let end = min(outDim, first + rowsPerBlock)
            for t in 0..<tokens {
                let xRow = x + t * xStride
                let yRow = y + t * yStride
                var o = first
                while o + 4 <= end {
                    let r = dot4(xRow, w + o * inDim, rowStride: inDim, count: inDim)
                    if accumulate {
                        yRow[o] += r[0]; yRow[o + 1] += r[1]; yRow[o + 2] += r[2]; yRow[o + 3] += r[3]
                    } else {
                        yRow[o] = r[0]; yRow[o + 1] = r[1]; yRow[o + 2] = r[2]; yRow[o + 3] = r[3]
                    }
                    o += 4
                }
                while o < end {
                    let r = dot(xRow, w + o * inDim, count: inDim)
                    yRow[o] = accumulate ? yRow[o] + r : r
                    o += 1
                }
            }
        }
    }

    /// The dot products of `x` with four rows of `w` (rows `rowStride` apart), loading `x` once.
    @inline(__always)
    @_optimize(speed)
    static func dot4(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, rowStride: Int, count: Int) -> SIMD4<Float> {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        let w0 = w, w1 = w + rowStride, w2 = w + 2 * rowStride, w3 = w + 3 * rowStride
        var i = 0
        while i + 8 <= count {
            let xv = load8(x + i)
            a0 += xv * load8(w0 + i)
            a1 += xv * load8(w1 + i)
            a2 += xv * load8(w2 + i)
            a3 += xv * load8(w3 + i)
            i += 8
        }
        var r = SIMD4<Float>(a0.sum(), a1.sum(), a2.sum(), a3.sum())
        while i < count {
            r += x[i] * SIMD4<Float>(w0[i], w1[i], w2[i], w3[i])
            i += 1
        }
        return r
    }

    /// Σ a[i] * b[i] over `count` elements.
    @inline(__always)
    @_optimize(speed)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= count {
            acc0 += load8(a + i) * load8(b + i)
            acc1 += load8(a + i + 8) * load8(b + i + 8)
            i += 16
        }
        if i + 8 <= count {
            acc0 += load8(a + i) * load8(b + i)
            i += 8
        }
        var sum = (acc0 + acc1).sum()
        while i < count {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// y += alpha * x over `count` elements.
    @inline(__always)
    @_optimize(speed)
    static func addScaled(_ x: UnsafePointer<Float>, _ alpha: Float, into y: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + 8 <= count {
            store8(load8(y + i) + alpha * load8(x + i), y + i)
            i += 8
        }
        while i < count {
            y[i] += alpha * x[i]
            i += 1
        }
    }

    /// y += x, elementwise over `count` elements (a bias added to one row).
    @inline(__always)
    @_optimize(speed)
    static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + 8 <= count {
            store8(load8(y + i) + load8(x + i), y + i)
            i += 8
        }
        while i < count {
            y[i] += x[i]
            i += 1
        }
    }

    /// out[t] = x[t] / sqrt(mean(x[t]²) + epsilon) * weight, for each of `tokens` rows of `dim`.
    static func rmsNorm(
        _ x: UnsafePointer<Float>, tokens: Int, dim: Int, weight: UnsafePointer<Float>, epsilon: Float,
        into out: UnsafeMutablePointer<Float>
    ) {
        for t in 0..<tokens {
            let row = x + t * dim, outRow = out + t * dim
            let meanSquare = dot(row, row, count: dim) / Float(dim)
            let scale = 1 / (meanSquare + epsilon).squareRoot()
            for i in 0..<dim { outRow[i] = row[i] * scale * weight[i] }
        }
    }

    /// out[t, i] = silu(gate[t, i]) * up[t, i], where `gateUp` holds each token's gate then up halves.
    ///
    ///     gateUp: [tokens, 2 * hidden], out: [tokens, hidden]
    static func swiGLU(_ gateUp: UnsafePointer<Float>, tokens: Int, hidden: Int, into out: UnsafeMutablePointer<Float>) {
        for t in 0..<tokens {
            let gate = gateUp + t * 2 * hidden, up = gate + hidden, outRow = out + t * hidden
            for i in 0..<hidden {
                let g = gate[i]
                outRow[i] = g / (1 + expf(-g)) * up[i]
            }
        }
    }

    /// Replaces `x[0..<count]` by softmax(x), stably (the maximum is subtracted first).
    static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        var maximum = -Float.infinity
        for i in 0..<count where x[i] > maximum { maximum = x[i] }
        var sum: Float = 0
        for i in 0..<count {
            let e = expf(x[i] - maximum)
            x[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in 0..<count { x[i] *= inverse }
    }

    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }
}
