@testable import Engine
import Testing

@Suite struct KVBlockManagerTests {
    static func sequence(_ id: UInt64, _ tokens: [Int32]) -> SequenceState { SequenceState(id: id, prompt: tokens) }

    @Test func aCachedPrefixIsSharedAndAFullyCachedPromptRecomputesItsLastBlock() {
        var manager = KVBlockManager(blockSize: 4, blockCount: 8, prefixCaching: true)
        let first = Self.sequence(1, Array(1...8))
        #expect(manager.cachedPrefix(of: first).isEmpty)
        let firstAdmitted = manager.admit(first, cached: [], positions: 8)
        #expect(firstAdmitted)
        first.computedCount = 8
        manager.registerComputedBlocks(of: first)

        // The same 8 tokens: only the first block is reused, the last one must run again for logits.
        let same = Self.sequence(2, Array(1...8))
        let cached = manager.cachedPrefix(of: same)
        #expect(cached == [first.blockTable[0]])
        // A longer prompt with the same start reuses both.
        let longer = Self.sequence(3, Array(1...10))
        #expect(manager.cachedPrefix(of: longer) == first.blockTable)
        // A different first block shares nothing, even with the same second block.
        #expect(manager.cachedPrefix(of: Self.sequence(4, [9, 2, 3, 4, 5, 6, 7, 8, 9])).isEmpty)

        let sameAdmitted = manager.admit(same, cached: cached, positions: 8)
        #expect(sameAdmitted)
        #expect(manager.pool.referenceCount(first.blockTable[0]) == 2)
        #expect(same.blockTable[1] != first.blockTable[1])
        manager.free(first)
        manager.free(same)
        #expect(manager.pool.blocksInUse == 0)
        // Freed, still cached: a new request revives them.
        #expect(manager.cachedPrefix(of: longer).count == 2)
    }

    @Test func admissionChangesNothingWhenTheBlocksAreMissing() {
        var manager = KVBlockManager(blockSize: 2, blockCount: 3, prefixCaching: true)
        let a = Self.sequence(1, [1, 2, 3, 4])
        let aAdmitted = manager.admit(a, cached: [], positions: 4)
        #expect(aAdmitted)
        let b = Self.sequence(2, [5, 6, 7, 8, 9])
        let bAdmitted = manager.admit(b, cached: [], positions: 5)
        #expect(!bAdmitted)
        #expect(b.blockTable.isEmpty && manager.pool.blocksInUse == 2)
        let grewTo8 = manager.grow(a, positions: 8)
        #expect(!grewTo8)
        #expect(a.blockTable.count == 2)
        let grewTo5 = manager.grow(a, positions: 5)
        #expect(grewTo5)
        #expect(manager.pool.freeBlockCount == 0)
    }

    @Test func withoutPrefixCachingNothingIsShared() {
        var manager = KVBlockManager(blockSize: 2, blockCount: 4, prefixCaching: false)
        let a = Self.sequence(1, [1, 2, 3])
        let admitted = manager.admit(a, cached: [], positions: 3)
        #expect(admitted)
        a.computedCount = 3
        manager.registerComputedBlocks(of: a)
        #expect(manager.cachedPrefix(of: Self.sequence(2, [1, 2, 3])).isEmpty)
    }
}
