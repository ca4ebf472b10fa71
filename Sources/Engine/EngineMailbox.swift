/// A request on its way from `generate` to the engine thread.
struct SubmittedRequest: Sendable {
    let id: UInt64
    let request: GenerationRequest
    let continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation
}

/// The only state callers and the engine thread share, behind one lock: submitted requests not yet
/// taken, cancellations, the shutdown flag and the last published statistics. The engine thread
/// sleeps here when it has nothing to run.
final class EngineMailbox: @unchecked Sendable {
    // @unchecked: every stored property is read and written under `lock`.

    /// What the engine thread takes at the top of each loop.
    struct Work {
        var submitted: [SubmittedRequest] = []
        var cancelled: [UInt64] = []
        /// Why the engine must stop (nil: keep going).
        var shutdown: String?
    }

    private let lock = ConditionLock()
    private var work = Work()
    private var published: EngineStatistics
    private var nextID: UInt64 = 0
    private var exited = false
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []

    init(statistics: EngineStatistics) {
        published = statistics
    }

    /// A fresh request id.
    func makeID() -> UInt64 {
        lock.withLock {
            nextID += 1
            return nextID
        }
    }

    /// Hands `request` to the engine thread, unless the engine is stopping or `maxWaiting` requests
    /// already wait.
    func submit(_ request: SubmittedRequest, maxWaiting: Int) throws {
        try lock.withLock {
            if let reason = work.shutdown { throw EngineError.stopped(reason) }
            let waiting = published.waitingRequests + work.submitted.count
            if waiting >= maxWaiting { throw EngineError.overloaded(waiting: waiting) }
            work.submitted.append(request)
            lock.signal()
        }
    }

    func cancel(_ id: UInt64) {
        lock.withLock {
            work.cancelled.append(id)
            lock.signal()
        }
    }

    /// Asks the engine thread to end every request and exit (the first reason given wins).
    func requestShutdown(reason: String) {
        lock.withLock {
            if work.shutdown == nil { work.shutdown = reason }
            lock.signal()
        }
    }

    /// Whether a shutdown was requested.
    var isShuttingDown: Bool { lock.withLock { work.shutdown != nil } }

    /// Takes everything callers left; when `idle` (nothing to run), first sleeps until there is
    /// something. Requests taken count as waiting until the engine publishes its own figures.
    func nextWork(idle: Bool) -> Work {
        lock.withLock {
            while idle, work.submitted.isEmpty, work.cancelled.isEmpty, work.shutdown == nil { lock.wait() }
            let taken = work
            work.submitted.removeAll()
            work.cancelled.removeAll()
            published.waitingRequests += taken.submitted.count
            return taken
        }
    }

    func publish(_ statistics: EngineStatistics) {
        lock.withLock { published = statistics }
    }

    /// The last published statistics, with requests submitted since counted as waiting.
    var statistics: EngineStatistics {
        lock.withLock {
            var statistics = published
            statistics.waitingRequests += work.submitted.count
            return statistics
        }
    }

    /// Called by the engine thread as it exits: wakes every `waitUntilExited()`.
    func markExited() {
        let waiters = lock.withLock {
            exited = true
            defer { exitWaiters.removeAll() }
            return exitWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func waitUntilExited() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let done = lock.withLock {
                if !exited { exitWaiters.append(waiter) }
                return exited
            }
            if done { waiter.resume() }
        }
    }
}
