#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A mutex with a condition variable (pthreads): the engine thread sleeps on it when it has nothing
/// to do, and callers wake it when they submit or cancel. Synchronization's `Mutex` has no condition.
final class ConditionLock: @unchecked Sendable {
    // @unchecked: the pthread objects are what makes access safe; their addresses never change.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Sleeps until `signal()`; call it inside `withLock`, in a loop that checks its condition
    /// (wake-ups may be spurious).
    func wait() {
        pthread_cond_wait(condition, mutex)
    }

    /// Wakes the thread sleeping in `wait()`, if any.
    func signal() {
        pthread_cond_signal(condition)
    }

    /// Wakes every thread sleeping in `wait()`.
    func broadcast() {
        pthread_cond_broadcast(condition)
    }
}
