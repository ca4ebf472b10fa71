import Engine
import Hummingbird

/// Runs one engine request and answers it, whole or as server-sent events, in either endpoint's
/// format.
///
/// Both ways run inside `consumeWithCancellationOnInboundClose`: when the client disconnects, the
/// task consuming the engine's stream is cancelled, which ends the stream and so cancels the
/// request in the engine (freeing its KV blocks) instead of generating for nobody. That consumes
/// the connection's inbound side, so these responses say `Connection: close`.
struct GenerationResponder: Sendable {
    let engine: any GenerationEngine
    let metrics: ServerMetrics

    /// What the request asked for besides the engine request itself.
    struct Options: Sendable {
        var stream: Bool
        var includeUsage: Bool
        /// Where the prompt was ("prompt" or "messages"), for errors.
        var promptParam: String
    }

    func respond<Format: CompletionFormat>(
        to request: Request, generation: GenerationRequest, format: Format, options: Options, timing: GenerationTiming
    ) async throws -> Response {
        let events: AsyncThrowingStream<GenerationEvent, any Error>
        do {
            events = try engine.generate(generation)
        } catch {
            throw APIError(engineFailure: error, promptParam: options.promptParam)
        }
        let metrics = metrics
        if !options.stream {
            let response = try await request.body.consumeWithCancellationOnInboundClose { _ in
                try await Self.collect(events, format: format, options: options, timing: timing, metrics: metrics)
            }
            return jsonResponse(response, headers: [.connection: "close"])
        }
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache", .connection: "close"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await request.body.consumeWithCancellationOnInboundClose { _ in
                try await Self.stream(events, format: format, options: options, timing: timing, metrics: metrics, to: &writer)
            }
            try await writer.finish(nil)
        })
    }

    /// The whole response, once the engine finishes.
    private static func collect<Format: CompletionFormat>(
        _ events: AsyncThrowingStream<GenerationEvent, any Error>, format: Format, options: Options, timing: GenerationTiming,
        metrics: ServerMetrics
    ) async throws -> Format.Whole {
        var timing = timing
        var tokens: [GeneratedToken] = []
        var whole: Format.Whole?
        do {
            // Read on to the stream's end after `finished`: a stream left between its last event
            // and its end reads as cancelled to the engine.
            for try await event in events {
                switch event {
                case let .tokens(new):
                    timing.received(new.count)
                    tokens += new
                case let .finished(reason, usage):
                    metrics.recordGeneration(usage: usage, timing: timing)
                    whole = format.response(text: tokens.map(\.text).joined(), tokens: tokens, finishReason: reason, usage: usage)
                }
            }
        } catch {
            if let whole { return whole }
            throw APIError(engineFailure: error, promptParam: options.promptParam)
        }
        if let whole { return whole }
        try Task.checkCancellation()
        throw APIError.internalError("the engine ended the generation without finishing it")
    }

    /// Writes `data: {chunk}` events as tokens arrive, then `data: [DONE]`. An engine failure after
    /// the 200 has gone out is sent as a `data: {"error": ...}` event before `[DONE]`.
    private static func stream<Format: CompletionFormat>(
        _ events: AsyncThrowingStream<GenerationEvent, any Error>, format: Format, options: Options, timing: GenerationTiming,
        metrics: ServerMetrics, to writer: inout any ResponseBodyWriter
    ) async throws {
        var timing = timing
        var textOffset = 0
        for chunk in format.openingChunks() { try await writer.write(ServerSentEvent.data(chunk)) }
        var iterator = events.makeAsyncIterator()
        var finished = false
        while !finished {
            let event: GenerationEvent?
            do {
                event = try await iterator.next()
            } catch {
                try await writer.write(ServerSentEvent.data(APIError(engineFailure: error, promptParam: options.promptParam).body))
                break
            }
            guard let event else {
                // A stream that ends unfinished was cancelled (the client left) or abandoned.
                try Task.checkCancellation()
                try await writer.write(ServerSentEvent.data(APIError.internalError("the engine ended the generation without finishing it").body))
                break
            }
            switch event {
            case let .tokens(tokens):
                timing.received(tokens.count)
                if let chunk = format.chunk(for: tokens, textOffset: textOffset) { try await writer.write(ServerSentEvent.data(chunk)) }
                textOffset += tokens.reduce(0) { $0 + $1.text.unicodeScalars.count }
            case let .finished(reason, usage):
                metrics.recordGeneration(usage: usage, timing: timing)
                try await writer.write(ServerSentEvent.data(format.finishChunk(reason)))
                if options.includeUsage { try await writer.write(ServerSentEvent.data(format.usageChunk(usage))) }
                finished = true
            }
        }
        // The stream ends right after `finished`; leaving it before that reads as cancelled to the engine.
        if finished { _ = try? await iterator.next() }
        try await writer.write(ServerSentEvent.done)
    }
}

/// Server-sent events as OpenAI frames them: `data: <json>` and a blank line; `data: [DONE]` last.
enum ServerSentEvent {
    static func data(_ value: some Encodable) -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        var json = encodeJSON(value)
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
        return buffer
    }

    static let done = ByteBuffer(string: "data: [DONE]\n\n")
}
