#if canImport(Glibc)
import Glibc
#endif

/// A POSIX thread running a closure: the one place kprobe-run starts a thread. Work that blocks
/// in a system call or in libbpf (decompression, writing and flushing the header cache,
/// destroying links) needs a thread of its own, with its own tid for a nice value, rather than a
/// task of the cooperative pool.
public struct NativeThread: Sendable {
    public let id: pthread_t

    /// Starts `body` on a new thread; the error pthread_create gave if it cannot.
    public static func start(_ body: @escaping @Sendable () -> Void) throws(Errno) -> NativeThread {
        final class Context {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let context = Unmanaged.passRetained(Context(body))
        var id = pthread_t()
        let status = pthread_create(&id, nil, { context in
            Unmanaged<Context>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, context.toOpaque())
        guard status == 0 else {
            context.release()
            throw Errno(status)
        }
        return NativeThread(id: id)
    }

    /// Waits for the thread to return.
    public func join() { pthread_join(id, nil) }
}

/// A mutex with one condition variable, for two threads that hand work to each other.
///
/// `@unchecked Sendable`: the pthread objects are made for sharing between threads, and live
/// (at fixed addresses) as long as the object.
public final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }

    public func unlock() { pthread_mutex_unlock(mutex) }

    /// With the lock held: releases it until another thread signals, then holds it again.
    public func wait() { pthread_cond_wait(condition, mutex) }

    /// Wakes every waiting thread.
    public func broadcast() { pthread_cond_broadcast(condition) }

    public func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        lock()
        defer { unlock() }
        return try body()
    }
}
