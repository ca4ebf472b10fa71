import Kernels
import Testing

/// Prefill query tiles (`DecodeAttentionKernel.appendQueryTiles`): every row in exactly one tile,
/// tiles within one segment, none longer than the kernel's M tile allows.
@Suite struct QueryTilesTests {
    @Test func tilesCoverEachSegmentOnce() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let segments = (0..<Int.random(in: 1...6, using: &random)).map { _ in Int.random(in: 1...70, using: &random) }
            let rowsPerTile = [1, 2, 4, 5, 16].randomElement(using: &random)!
            let rows = segments.reduce(0, +)
            var tiles = [Int32](repeating: -1, count: 2 * rows), count = 0, first = 0
            var owner = [Int](repeating: -1, count: rows)
            for (s, n) in segments.enumerated() {
                count = tiles.withUnsafeMutableBufferPointer {
                    DecodeAttentionKernel.appendQueryTiles(rows: first..<(first + n), rowsPerTile: rowsPerTile, into: $0.baseAddress!, at: count)
                }
                for r in first..<(first + n) { owner[r] = s }
                first += n
            }
            #expect(count == segments.reduce(0) { $0 + ($1 + rowsPerTile - 1) / rowsPerTile })
            var covered = [Int](repeating: 0, count: rows)
            for i in 0..<count {
                let start = Int(tiles[2 * i]), n = Int(tiles[2 * i + 1])
                #expect((1...rowsPerTile).contains(n))
                #expect(Set(owner[start..<(start + n)]).count == 1, "a tile spans two sequences")
                for r in start..<(start + n) { covered[r] += 1 }
            }
            #expect(covered.allSatisfy { $0 == 1 })
        }
    }

    /// A step cut into launches of `window` rows: each launch's tiles cover exactly its rows
    /// (relative to its first), never span a sequence or a launch, and a launch has no tile list
    /// (nil) exactly when all its tiles are single rows.
    @Test func launchTilesCoverEachWindow() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let segments = (0..<Int.random(in: 1...8, using: &random)).map { _ in
                Bool.random(using: &random) ? 1 : Int.random(in: 1...300, using: &random)
            }
            let window = [1, 3, 16, 256].randomElement(using: &random)!
            let rowsPerTile = [1, 4, 5, 16].randomElement(using: &random)!
            let rows = segments.reduce(0, +)
            var out = [Int32](repeating: -1, count: 2 * rows), launches: [Range<Int>?] = []
            let count = out.withUnsafeMutableBufferPointer {
                DecodeAttentionKernel.appendLaunchTiles(segments: segments, window: window, rowsPerTile: rowsPerTile,
                                                        into: $0.baseAddress!, launches: &launches)
            }
            #expect(launches.count == (rows + window - 1) / window)
            var owner: [Int] = []
            for (s, n) in segments.enumerated() { owner += repeatElement(s, count: n) }
            // Tiles are written in launch order, and each launch's first tile starts at its row 0.
            let starts = (0..<count).filter { out[2 * $0] == 0 }
            #expect(starts.count == launches.count)
            for (l, range) in launches.enumerated() where l < starts.count {
                let start = l * window, n = min(window, rows - start)
                let tileRange = starts[l]..<(l + 1 < starts.count ? starts[l + 1] : count)
                var covered = [Int](repeating: 0, count: n), multi = false
                for i in tileRange {
                    let first = Int(out[2 * i]), size = Int(out[2 * i + 1])
                    #expect((1...rowsPerTile).contains(size) && first + size <= n)
                    guard first + size <= n else { continue }
                    #expect(Set(owner[(start + first)..<(start + first + size)]).count == 1, "a tile spans two sequences")
                    for r in first..<(first + size) { covered[r] += 1 }
                    multi = multi || size > 1
                }
                #expect(covered.allSatisfy { $0 == 1 }, "launch \(l) of \(launches.count)")
                if let range { #expect(range == tileRange && multi) } else { #expect(!multi) }
            }
        }
    }

    @Test func rowsPerTileFillSixteenMRows() {
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: 32, kvHeads: 8) == 4)  // Llama-3
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: 9, kvHeads: 3) == 5)   // SmolLM2
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: 8, kvHeads: 8) == 16)
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: 64, kvHeads: 2) == 1)  // group 32: two CTAs a token
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .bf16, qHeads: 32, kvHeads: 8) == 1)
    }
}
