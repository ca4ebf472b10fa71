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

    @Test func rowsPerTileFillSixteenMRows() {
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: 32, kvHeads: 8) == 4)  // Llama-3
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: 9, kvHeads: 3) == 5)   // SmolLM2
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: 8, kvHeads: 8) == 16)
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .kv4, qHeads: 64, kvHeads: 2) == 1)  // group 32: two CTAs a token
        #expect(DecodeAttentionKernel.queryRowsPerTile(format: .bf16, qHeads: 32, kvHeads: 8) == 1)
    }
}
