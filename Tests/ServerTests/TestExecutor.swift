import Foundation

/// Threads of the server tests' own, for every task the tests start: `swift test` runs all
/// targets' tests at once, and CPU-heavy synchronous tests elsewhere (forward passes, FMPQ) can
/// hold both of the 2-core machine's cooperative threads for many minutes. The in-process server,
/// its clients and the fake engine then run here instead, unstarved.
final class ThreadPoolTaskExecutor: TaskExecutor, @unchecked Sendable {
    // `jobs` is guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    init(threads: Int) {
        for index in 0..<threads {
            let thread = Thread { [unowned self] in self.runJobs() }
            thread.name = "server-tests-\(index)"
            thread.start()
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func runJobs() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Lives as long as the test process.
let serverTestExecutor = ThreadPoolTaskExecutor(threads: 4)

/// Runs `body`, and every task it starts in structured concurrency, on `serverTestExecutor`.
/// Unstructured tasks (`Task { }`) do not inherit the preference: create them with
/// `Task(executorPreference: serverTestExecutor)` (a plain one starved for 30 s on a loaded CI run).
func onServerTestThreads<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    try await withTaskExecutorPreference(serverTestExecutor) { try await body() }
}
