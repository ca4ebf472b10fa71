@testable import Engine
import Testing

@Suite struct BlockPoolTests {
    static func hash(_ tokens: [Int32], parent: UInt64 = BlockHash.rootParent) -> BlockHash {
        BlockHash(parent: parent, tokens: tokens[...])
    }

    @Test func allocatesEveryBlockOnceThenRefuses() {
        var pool = BlockPool(blockCount: 4)
        let blocks = (0..<4).compactMap { _ in pool.allocate() }
        #expect(Set(blocks) == [0, 1, 2, 3])
        #expect(pool.allocate() == nil)
        #expect(pool.blocksInUse == 4 && pool.freeBlockCount == 0)
        pool.release(blocks[2])
        #expect(pool.blocksInUse == 3)
        #expect(pool.allocate() == blocks[2])
    }

    @Test func sharedBlocksAreFreedByTheLastReference() {
        var pool = BlockPool(blockCount: 2)
        let block = pool.allocate()!
        pool.acquire(block)
        #expect(pool.referenceCount(block) == 2)
        pool.release(block)
        #expect(pool.blocksInUse == 1)
        pool.release(block)
        #expect(pool.blocksInUse == 0 && pool.isFree(block))
    }

    @Test func freedCachedBlocksAreRevivedOrEvictedOldestFirst() {
        var pool = BlockPool(blockCount: 3)
        let a = pool.allocate()!, b = pool.allocate()!, c = pool.allocate()!
        let ha = Self.hash([1, 2]), hb = Self.hash([3, 4], parent: ha.value)
        pool.register(a, as: ha)
        pool.register(b, as: hb)
        pool.release(b)
        pool.release(a)
        pool.release(c)  // uncached: handed out before any cached block is evicted
        #expect(pool.evictionOrder == [b, a])
        #expect(pool.cachedBlock(for: ha) == a && pool.cachedBlock(for: hb) == b)

        #expect(pool.allocate() == c)
        // Reviving `a` takes it off the LRU list; the next allocation evicts `b`, the oldest.
        pool.acquire(a)
        #expect(pool.evictionOrder == [b])
        #expect(pool.allocate() == b)
        #expect(pool.cachedBlock(for: hb) == nil, "an evicted block leaves the table")
        #expect(pool.cachedBlock(for: ha) == a)
        #expect(pool.allocate() == nil, "blocks in use are never handed out")
    }

    @Test func aSecondBlockWithTheSameContentsStaysUncached() {
        var pool = BlockPool(blockCount: 2)
        let a = pool.allocate()!, b = pool.allocate()!
        pool.register(a, as: Self.hash([5]))
        pool.register(b, as: Self.hash([5]))
        #expect(pool.cachedBlock(for: Self.hash([5])) == a)
        pool.release(b)
        #expect(pool.evictionOrder.isEmpty, "b freed as an uncached block")
        #expect(pool.cachedBlockCount == 1)
    }

    @Test func hashesChainThePrefix() {
        let first = Self.hash([1, 2, 3])
        #expect(first == Self.hash([1, 2, 3]))
        #expect(first != Self.hash([1, 2, 4]))
        // The same block of tokens after a different prefix is a different block.
        #expect(Self.hash([7, 7], parent: first.value) != Self.hash([7, 7], parent: Self.hash([1, 2, 4]).value))
        #expect(Self.hash([7, 7], parent: first.value) == Self.hash([7, 7], parent: first.value))
    }

    /// Random allocate/acquire/release/register against a model of who holds what: a block handed out
    /// by `allocate` never has another holder, and the counts always agree.
    @Test func randomOperationsNeverHandOutABlockInUse() {
        var pool = BlockPool(blockCount: 8)
        var random = SystemRandomNumberGenerator()
        var held: [Int32: Int] = [:]
        for step in 0..<5000 {
            switch Int.random(in: 0..<4, using: &random) {
            case 0, 1:
                if let block = pool.allocate() {
                    #expect(held[block, default: 0] == 0, "step \(step): block \(block) handed out while held")
                    held[block] = 1
                } else {
                    #expect(held.values.filter { $0 > 0 }.count == 8)
                }
            case 2:
                if let block = held.filter({ $0.value > 0 }).keys.randomElement(using: &random) {
                    pool.release(block)
                    held[block]! -= 1
                }
            default:
                if let block = held.filter({ $0.value > 0 }).keys.randomElement(using: &random) {
                    if Bool.random(using: &random) {
                        pool.acquire(block)
                        held[block]! += 1
                    } else {
                        pool.register(block, as: Self.hash([Int32(step)]))
                    }
                }
            }
            #expect(pool.blocksInUse == held.values.filter { $0 > 0 }.count)
        }
    }
}
