import Dispatch

/// Runs the iterations of a loop on several threads (Dispatch's `concurrentPerform`), or inline when
/// there is one thread or one iteration. Kernels split their work into `chunks(for:)` pieces so that
/// every thread gets a few and a slow one cannot hold up the rest for long.
struct ParallelLoop: Sendable {
    /// Threads the loop may use (at least 1).
    let threads: Int

    init(threads: Int) {
        self.threads = max(1, threads)
    }

    /// Calls `body(i)` for every `i` in `0..<iterations`, in any order, possibly concurrently:
    /// `body` must only write memory that no other iteration touches.
    @inline(__always)
    func run(_ iterations: Int, _ body: (Int) -> Void) {
        if threads == 1 || iterations <= 1 {
            for i in 0..<iterations { body(i) }
        } else {
            // Kernels capture raw pointers, which are not Sendable; the contract above (disjoint writes,
            // all iterations done before `run` returns) is what makes sharing them safe.
            withoutActuallyEscaping(body) { body in
                let shared = unsafeBitCast(body, to: (@Sendable (Int) -> Void).self)
                DispatchQueue.concurrentPerform(iterations: iterations, execute: shared)
            }
        }
    }

    /// How many pieces to cut `work` units into: about 4 per thread, never more than `work`.
    func chunks(for work: Int) -> Int {
        threads == 1 ? 1 : max(1, min(work, threads * 4))
    }
}
