/// The free blocks that still hold cached contents, least recently freed first: a doubly linked list
/// threaded through arrays indexed by block id, so that appending, taking the oldest and removing any
/// block (when a request revives it) are O(1).
struct BlockLRUList {
    private static let none: Int32 = -1
    private var previous: [Int32]
    private var next: [Int32]
    private var member: [Bool]
    private var head = BlockLRUList.none
    private var tail = BlockLRUList.none
    private(set) var count = 0

    init(blockCount: Int) {
        previous = [Int32](repeating: Self.none, count: blockCount)
        next = [Int32](repeating: Self.none, count: blockCount)
        member = [Bool](repeating: false, count: blockCount)
    }

    func contains(_ block: Int32) -> Bool { member[Int(block)] }

    /// Adds `block` as the most recently freed.
    mutating func append(_ block: Int32) {
        precondition(!member[Int(block)], "BlockLRUList: block \(block) is already listed")
        member[Int(block)] = true
        previous[Int(block)] = tail
        next[Int(block)] = Self.none
        if tail != Self.none { next[Int(tail)] = block } else { head = block }
        tail = block
        count += 1
    }

    /// Takes the least recently freed block.
    mutating func removeOldest() -> Int32? {
        guard head != Self.none else { return nil }
        let block = head
        remove(block)
        return block
    }

    mutating func remove(_ block: Int32) {
        precondition(member[Int(block)], "BlockLRUList: block \(block) is not listed")
        let p = previous[Int(block)], n = next[Int(block)]
        if p != Self.none { next[Int(p)] = n } else { head = n }
        if n != Self.none { previous[Int(n)] = p } else { tail = p }
        member[Int(block)] = false
        count -= 1
    }

    /// The blocks, oldest first (for tests).
    var blocks: [Int32] {
        var result: [Int32] = []
        var b = head
        while b != Self.none {
            result.append(b)
            b = next[Int(b)]
        }
        return result
    }
}
