import NIOCore
import NIOHTTP1
import NIOPosix

/// The benchmark's HTTP/1.1 client: one connection per request, the response body handed over
/// piece by piece as it arrives (what TTFT needs). Plain http:// only.
///
/// NOTE: AsyncHTTPClient would do, but it brings TLS (BoringSSL) and HTTP/2 into the static
/// `comet` binary, about 6 MiB of its 40 MiB budget (scripts/build-gpu-binary.sh), for a load
/// generator that talks to a local server.
struct StreamingHTTPClient: Sendable {
    let host: String
    let port: Int

    /// "http://host:port" (a path, or a trailing slash, is refused: routes are added per request).
    init(baseURL: String) throws {
        guard baseURL.hasPrefix("http://") else {
            throw ServeBenchmarkError("only http:// URLs are supported, not \(baseURL)")
        }
        var authority = baseURL.dropFirst("http://".count)
        if authority.hasSuffix("/") { authority = authority.dropLast() }
        guard !authority.contains("/") else { throw ServeBenchmarkError("give the server's base URL without a path, not \(baseURL)") }
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {  // [::1]:8000
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let rest = authority[authority.index(after: close)...]
            port = rest.hasPrefix(":") ? Int(rest.dropFirst()) ?? -1 : 80
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            port = Int(authority[authority.index(after: colon)...]) ?? -1
        } else {
            host = String(authority)
            port = 80
        }
        guard !host.isEmpty, (1...65535).contains(port) else { throw ServeBenchmarkError("not a host and port: \(baseURL)") }
    }

    /// Sends one request and calls `onHead` with the status, then `onBody` with each piece of the
    /// body as it arrives; returns when the response has ended. The connection is closed after, and
    /// cut when the whole exchange takes longer than `timeout`.
    func send(
        method: HTTPMethod, path: String, headers: [(String, String)], body: ByteBuffer?, timeout: Duration,
        onHead: (HTTPResponseStatus) async throws -> Void, onBody: (ByteBuffer) async throws -> Void
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ServeBenchmarkError("cannot connect to \(host):\(port) (\(error))")
        }
        let timer = channel.channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout / .nanoseconds(1)))) {
            channel.channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            try await exchange(channel, method: method, path: path, headers: headers, body: body, onHead: onHead, onBody: onBody)
        } catch where ContinuousClock.now >= deadline {
            throw ServeBenchmarkError("no complete response within \(timeout)")
        }
    }

    private func exchange(
        _ channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>, method: HTTPMethod, path: String,
        headers: [(String, String)], body: ByteBuffer?,
        onHead: (HTTPResponseStatus) async throws -> Void, onBody: (ByteBuffer) async throws -> Void
    ) async throws {
        try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
            head.headers.add(name: "Host", value: port == 80 ? host : "\(host):\(port)")
            head.headers.add(name: "Connection", value: "close")
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            if let body { head.headers.add(name: "Content-Length", value: String(body.readableBytes)) }
            try await outbound.write(.head(head))
            if let body { try await outbound.write(.body(.byteBuffer(body))) }
            try await outbound.write(.end(nil))
            for try await part in inbound {
                switch part {
                case let .head(response): try await onHead(response.status)
                case let .body(piece): try await onBody(piece)
                case .end: return
                }
            }
            throw ServeBenchmarkError("the server closed the connection before the response ended")
        }
    }

    /// Sends one request and returns the status and the whole body (at most `limit` bytes).
    func collect(
        method: HTTPMethod, path: String, headers: [(String, String)], body: ByteBuffer? = nil, timeout: Duration, limit: Int = 1 << 20
    ) async throws -> (status: HTTPResponseStatus, body: ByteBuffer) {
        var status = HTTPResponseStatus.internalServerError
        var collected = ByteBuffer()
        try await send(method: method, path: path, headers: headers, body: body, timeout: timeout) { status = $0 } onBody: { piece in
            var piece = piece
            guard collected.readableBytes + piece.readableBytes <= limit else { throw ServeBenchmarkError("a response over \(limit) bytes") }
            collected.writeBuffer(&piece)
        }
        return (status, collected)
    }
}
