/// An ordered queue of device work; also where CUDA graphs are captured.
public final class CUDAStream: @unchecked Sendable {
    public let context: CUDAContext
    let handle: Handle

    init(context: CUDAContext) throws {
        self.context = context
        try context.bind()
        var stream: Handle?
        // CU_STREAM_NON_BLOCKING (1): no implicit synchronisation with the legacy default stream.
        try context.driver.check(context.api.cuStreamCreate(&stream, 1), "cuStreamCreate")
        handle = stream!
    }

    deinit {
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuStreamDestroy(handle)
    }

    /// Waits until all work queued so far has finished.
    public func synchronize() throws {
        try context.driver.check(context.api.cuStreamSynchronize(handle), "cuStreamSynchronize")
    }

    public func record(_ event: CUDAEvent) throws {
        try context.driver.check(context.api.cuEventRecord(event.handle, handle), "cuEventRecord")
    }

    /// Starts capturing the work queued on this stream into a graph instead of running it.
    /// Thread-local mode: other threads' unrelated CUDA calls do not break the capture.
    public func beginCapture() throws {
        try context.bind()
        try context.driver.check(context.api.cuStreamBeginCapture(handle, 1), "cuStreamBeginCapture")
    }

    /// Ends a capture and returns the captured work as a graph.
    public func endCapture() throws -> CUDAGraph {
        var graph: Handle?
        try context.driver.check(context.api.cuStreamEndCapture(handle, &graph), "cuStreamEndCapture")
        return CUDAGraph(context: context, handle: graph!)
    }

    /// Times `body`'s device work on this stream with events; returns milliseconds.
    public func time(_ body: () throws -> Void) throws -> Double {
        let start = try context.makeEvent(), end = try context.makeEvent()
        try record(start)
        try body()
        try record(end)
        return try end.milliseconds(since: start)
    }
}

/// A device-side timestamp, for timing with the GPU's own clock.
public final class CUDAEvent: @unchecked Sendable {
    public let context: CUDAContext
    let handle: Handle

    init(context: CUDAContext) throws {
        self.context = context
        try context.bind()
        var event: Handle?
        try context.driver.check(context.api.cuEventCreate(&event, 0), "cuEventCreate")
        handle = event!
    }

    deinit {
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuEventDestroy(handle)
    }

    public func synchronize() throws {
        try context.driver.check(context.api.cuEventSynchronize(handle), "cuEventSynchronize")
    }

    /// Whether the work before this event's record has finished (cuEventQuery; no waiting).
    public func isComplete() throws -> Bool {
        let result = context.api.cuEventQuery(handle)
        if result == 600 { return false }  // CUDA_ERROR_NOT_READY
        try context.driver.check(result, "cuEventQuery")
        return true
    }

    /// Milliseconds between `start` and this event; waits for this event first.
    public func milliseconds(since start: CUDAEvent) throws -> Double {
        try synchronize()
        var ms: Float = 0
        try context.driver.check(context.api.cuEventElapsedTime(&ms, start.handle, handle), "cuEventElapsedTime")
        return Double(ms)
    }
}

/// Captured device work, to be instantiated once and replayed many times (decode steps).
public final class CUDAGraph: @unchecked Sendable {
    public let context: CUDAContext
    let handle: Handle

    init(context: CUDAContext, handle: Handle) {
        self.context = context
        self.handle = handle
    }

    deinit {
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuGraphDestroy(handle)
    }

    public func instantiate() throws -> CUDAGraphExec {
        try context.bind()
        var exec: Handle?
        try context.driver.check(context.api.cuGraphInstantiateWithFlags(&exec, handle, 0), "cuGraphInstantiateWithFlags")
        return CUDAGraphExec(context: context, handle: exec!)
    }
}

/// An instantiated graph: one launch replays all its captured work.
public final class CUDAGraphExec: @unchecked Sendable {
    public let context: CUDAContext
    let handle: Handle

    init(context: CUDAContext, handle: Handle) {
        self.context = context
        self.handle = handle
    }

    deinit {
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuGraphExecDestroy(handle)
    }

    public func launch(on stream: CUDAStream) throws {
        try context.driver.check(context.api.cuGraphLaunch(handle, stream.handle), "cuGraphLaunch")
    }
}
