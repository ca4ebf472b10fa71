import Engine
import FoundationEssentials
import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals

/// How `comet serve` listens and what it accepts. Built at the edge (the CLI), validated there.
public struct APIServerConfiguration: Sendable {
    public var host: String
    /// 0 picks a free port (tests); `onListening` reports it.
    public var port: Int
    /// When set, every `/v1` route needs `Authorization: Bearer <apiKey>`.
    public var apiKey: String?
    /// Larger request bodies are refused with 413.
    public var maxBodyBytes: Int
    /// How long, after SIGINT/SIGTERM, in-flight requests may take to finish before they are cancelled.
    public var shutdownGracePeriod: Duration

    public static let defaultMaxBodyBytes = 4 << 20

    public init(
        host: String = "127.0.0.1", port: Int = 8000, apiKey: String? = nil, maxBodyBytes: Int = defaultMaxBodyBytes,
        shutdownGracePeriod: Duration = .seconds(30)
    ) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.maxBodyBytes = maxBodyBytes
        self.shutdownGracePeriod = shutdownGracePeriod
    }
}

/// The OpenAI-compatible HTTP server over one `GenerationEngine`.
///
/// Shutdown order (`run`): on SIGINT/SIGTERM the listener closes at once, in-flight requests and
/// streams run to their end for up to `shutdownGracePeriod`, then the rest are cancelled (which
/// cancels their generations); only then is `engine.shutdown()` awaited, and `run` returns.
public struct APIServer: Sendable {
    public let engine: any GenerationEngine
    public let configuration: APIServerConfiguration
    public let metrics: ServerMetrics
    let logger: Logger

    public init(engine: any GenerationEngine, configuration: APIServerConfiguration, logger: Logger = Logger(label: "comet.serve")) {
        self.engine = engine
        self.configuration = configuration
        self.metrics = ServerMetrics()
        self.logger = logger
    }

    /// The router with every route and middleware (tests drive it in-process).
    public func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: APIErrorMiddleware(metrics: metrics))
        if let apiKey = configuration.apiKey { router.add(middleware: BearerAuthMiddleware(key: apiKey)) }
        OpenAIRoutes(engine: engine, configuration: configuration, metrics: metrics, startTime: Int(Date().timeIntervalSince1970))
            .add(to: router)
        return router
    }

    /// The application: the HTTP server, and the engine as a service that it shuts down after the
    /// server has drained. `onListening` gets the bound port.
    public func makeApplication(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(
            router: makeRouter(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "comet"),
            // The application's service group shuts services down in reverse order: the server
            // first (drain), then the engine.
            services: [EngineShutdownService(engine: engine)],
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully (see the type's comment).
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await makeServiceGroup(signals: [.sigterm, .sigint], onListening: onListening).run()
    }

    /// The service group `run` runs: graceful shutdown on `signals` (or `triggerGracefulShutdown()`),
    /// escalated to cancellation after `shutdownGracePeriod`.
    public func makeServiceGroup(signals: [UnixSignal], onListening: @escaping @Sendable (Int) async -> Void = { _ in }) -> ServiceGroup {
        var group = ServiceGroupConfiguration(
            services: [.init(service: makeApplication(onListening: onListening))], gracefulShutdownSignals: signals, logger: logger)
        group.maximumGracefulShutdownDuration = configuration.shutdownGracePeriod
        return ServiceGroup(configuration: group)
    }
}

/// Holds the engine for the lifetime of the server and calls `engine.shutdown()` when the server
/// shuts down (gracefully or by cancellation): running requests end with `EngineError.stopped`
/// and the engine thread exits.
struct EngineShutdownService: Service {
    let engine: any GenerationEngine

    func run() async throws {
        // Returns on graceful shutdown, throws on cancellation: either way the engine stops.
        try? await gracefulShutdown()
        await engine.shutdown()
    }
}
