/// Cutting FMPQ linears for tensor parallelism.
///
/// A column-parallel linear (qkv, gate_up) keeps its whole input, so its permutation and layout
/// are every rank's: a rank takes some output rows (`Int4Weights.rows`). A row-parallel linear
/// (o, down) splits its input channels, and FMPQ's permutation must then never move a channel
/// across ranks, nor may a block straddle two: its permutation is made shard by shard
/// (`FMPQPermutation(scores:...shards:)`), so that permuted K reads
///
///     [rank 0 INT4 | rank 1 INT4 | ... | rank 0 INT8 | rank 1 INT8 | ...]
///
/// with the same INT8 block count on every rank. That is a valid layout for the whole model
/// (INT4 blocks, then INT8 blocks), and each rank's cut (`rowParallelShard`) is a valid layout of
/// its own. The partial outputs sum to the whole linear's exactly (up to float summation
/// order): every block's activation scale depends only on the block's own channels.
extension FMPQPermutation {
    /// The permutation of a row-parallel linear under `shards`-way tensor parallelism: each of
    /// `shards` equal contiguous channel groups is permuted on its own (as
    /// `init(scores:budget:blockSize:int4Order:)` would) with the largest INT8 block count the
    /// budget gives any group, and the groups are laid out as the type comment shows. One
    /// shard is the ordinary permutation.
    public init(
        scores: [Float], budget: INT8Budget = .default, blockSize: Int = 128, int4Order: INT4Order = .sortedByScore, shards: Int
    ) throws {
        guard shards > 1 else {
            try self.init(scores: scores, budget: budget, blockSize: blockSize, int4Order: int4Order)
            return
        }
        let k = scores.count, width = k / shards
        guard k % shards == 0, width % blockSize == 0 else {
            throw QuantError.invalidLayout(
                "\(k) input channels do not split into \(shards) tensor-parallel shards of whole \(blockSize)-channel blocks")
        }
        let groups = (0..<shards).map { Array(scores[($0 * width)..<(($0 + 1) * width)]) }
        let int8Blocks = groups.map { budget.int8Blocks(channels: width, blockSize: blockSize, scores: $0) }.max() ?? 0
        let parts = try groups.map {
            try FMPQPermutation(scores: $0, budget: .outlierChannels(int8Blocks * blockSize), blockSize: blockSize, int4Order: int4Order)
        }
        let int4Width = width - int8Blocks * blockSize
        var order: [Int32] = []
        order.reserveCapacity(k)
        for (r, part) in parts.enumerated() { order += part.permutation.prefix(int4Width).map { $0 + Int32(r * width) } }
        for (r, part) in parts.enumerated() { order += part.permutation.suffix(width - int4Width).map { $0 + Int32(r * width) } }
        try self.init(layout: FMPQLayout(inputChannels: k, blockSize: blockSize, int8Blocks: shards * int8Blocks), permutation: order)
    }

    /// The permuted positions that rank `rank` of `ranks` owns in a row-parallel linear: its INT4
    /// blocks, then its INT8 blocks. Throws unless the layout splits so.
    func rowParallelPositions(rank: Int, of ranks: Int) throws -> (int4: Range<Int>, int8: Range<Int>) {
        let l = layout, k = l.inputChannels
        guard k % ranks == 0, (k / ranks) % l.blockSize == 0, l.int8Blocks % ranks == 0 else {
            throw QuantError.invalidLayout(
                "a layer of \(k) channels with \(l.int8Blocks) INT8 blocks of \(l.blockSize) does not split into \(ranks) tensor-parallel shards")
        }
        let int4 = l.int4Channels / ranks, int8 = l.int8Channels / ranks
        return ((rank * int4)..<((rank + 1) * int4), (l.int4Channels + rank * int8)..<(l.int4Channels + (rank + 1) * int8))
    }

    /// Rank `rank`'s cut of a row-parallel linear with this permutation and `weights`: the
    /// permutation of its own channels (numbered from 0) and the weight columns of its blocks.
    /// Throws when the permutation moves channels across ranks (a checkpoint quantized for
    /// another tensor parallelism).
    public func rowParallelShard(rank: Int, of ranks: Int, weights: Int4Weights) throws -> (weights: Int4Weights, permutation: FMPQPermutation) {
        guard weights.layout == layout else {
            throw QuantError.shapeMismatch("weight layout \(weights.layout) differs from permutation layout \(layout)")
        }
        let (int4, int8) = try rowParallelPositions(rank: rank, of: ranks)
        let width = layout.inputChannels / ranks, first = Int32(rank * width)
        var local: [Int32] = []
        local.reserveCapacity(width)
        for p in Array(int4) + Array(int8) {
            let c = permutation[p] - first
            guard (0..<Int32(width)).contains(c) else {
                throw QuantError.invalidLayout(
                    "this layer's permutation moves channel \(permutation[p]) into tensor-parallel rank \(rank)'s blocks: it was not quantized for \(ranks)-way tensor parallelism (quantize with --tensor-parallel \(ranks))")
            }
            local.append(c)
        }
        let localLayout = try FMPQLayout(
            inputChannels: width, blockSize: layout.blockSize, int8Blocks: layout.int8Blocks / ranks, int4Clip: layout.int4Clip,
            rotation: layout.rotation)
        let bs = layout.blockSize
        let blocks = [(int4.lowerBound / bs)..<(int4.upperBound / bs), (int8.lowerBound / bs)..<(int8.upperBound / bs)]
        return (try weights.blocks(blocks, layout: localLayout), try FMPQPermutation(layout: localLayout, permutation: local))
    }
}

extension Int4Weights {
    /// The output rows in `ranges`, in order (a column-parallel rank's cut).
    public func rows(_ ranges: [Range<Int>]) throws -> Int4Weights {
        let rowBytes = layout.paddedChannels / 2, blocks = layout.blockCount
        var codes: [UInt8] = [], scales: [Float16] = []
        for range in ranges {
            guard range.lowerBound >= 0, range.upperBound <= outputs else {
                throw QuantError.shapeMismatch("rows \(range) of a linear with \(outputs) outputs")
            }
            codes += self.codes[(range.lowerBound * rowBytes)..<(range.upperBound * rowBytes)]
            scales += self.scales[(range.lowerBound * blocks)..<(range.upperBound * blocks)]
        }
        return try Int4Weights(layout: layout, outputs: ranges.reduce(0) { $0 + $1.count }, codes: codes, scales: scales)
    }

    /// The blocks (of permuted K) in `ranges`, in order, as weights of `layout` (whose padded
    /// width they must fill exactly).
    func blocks(_ ranges: [Range<Int>], layout newLayout: FMPQLayout) throws -> Int4Weights {
        let bs = layout.blockSize, rowBytes = layout.paddedChannels / 2, blocks = layout.blockCount
        guard newLayout.blockSize == bs, ranges.reduce(0, { $0 + $1.count }) == newLayout.blockCount,
              ranges.allSatisfy({ $0.lowerBound >= 0 && $0.upperBound <= blocks }) else {
            throw QuantError.shapeMismatch("blocks \(ranges) of \(layout) as \(newLayout)")
        }
        var codes: [UInt8] = [], scales: [Float16] = []
        codes.reserveCapacity(outputs * newLayout.paddedChannels / 2)
        scales.reserveCapacity(outputs * newLayout.blockCount)
        for n in 0..<outputs {
            for range in ranges {
                let rowStart: Int = n * rowBytes, blockBytes: Int = bs / 2
                let first: Int = rowStart + range.lowerBound * blockBytes, last: Int = rowStart + range.upperBound * blockBytes
                codes += self.codes[first..<last]
                let scaleStart: Int = n * blocks
                scales += self.scales[(scaleStart + range.lowerBound)..<(scaleStart + range.upperBound)]
            }
        }
        return try Int4Weights(layout: newLayout, outputs: outputs, codes: codes, scales: scales)
    }
}
