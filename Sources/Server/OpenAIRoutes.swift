import Engine
import FoundationEssentials
import Hummingbird

/// The routes of the API over one engine: the two generation endpoints, the model list, health and
/// metrics.
struct OpenAIRoutes: Sendable {
    let engine: any GenerationEngine
    let configuration: APIServerConfiguration
    let metrics: ServerMetrics
    /// Unix seconds when the server started (the model's `created`).
    let startTime: Int

    func add(to router: Router<BasicRequestContext>) {
        router.post("/v1/completions") { request, _ in try await completions(request) }
        router.post("/v1/chat/completions") { request, _ in try await chatCompletions(request) }
        router.get("/v1/models") { _, _ in models() }
        router.get("/health") { _, _ in jsonResponse(["status": "ok"]) }
        router.get("/metrics") { _, _ in
            let text = metrics.exposition(engine.statistics)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
    }

    private var responder: GenerationResponder { GenerationResponder(engine: engine, metrics: metrics) }

    func completions(_ request: Request) async throws -> Response {
        let timing = GenerationTiming()
        var request = request
        let body = try await decodeRequestBody(CompletionRequest.self, from: readBody(&request))
        let parameters = body.parameters
        try checkModel(parameters.model)
        let prompt = try body.promptTokens(engine.tokenizer)
        let identity = newIdentity(prefix: "cmpl-")
        let generation = try parameters.generationRequest(
            id: identity.id, prompt: prompt, contextLength: engine.contextLength,
            defaultMaxTokens: CompletionRequest.defaultMaxTokens, topLogprobs: body.logprobs, stopTokens: nil,
            promptParam: "prompt")
        let format = TextCompletionFormat(identity: identity, wantsLogprobs: body.logprobs != nil, includeUsage: parameters.includeUsage)
        return try await responder.respond(
            to: request, generation: generation, format: format,
            options: .init(stream: parameters.stream, includeUsage: parameters.includeUsage, promptParam: "prompt"), timing: timing)
    }

    func chatCompletions(_ request: Request) async throws -> Response {
        let timing = GenerationTiming()
        var request = request
        let body = try await decodeRequestBody(ChatCompletionRequest.self, from: readBody(&request))
        let parameters = body.parameters
        try checkModel(parameters.model)
        let template = engine.chatTemplate
        let prompt = try body.promptTokens(engine.tokenizer, template: template)
        let identity = newIdentity(prefix: "chatcmpl-")
        // Without max_tokens a chat reply may run to the end of the context, as OpenAI's does.
        let generation = try parameters.generationRequest(
            id: identity.id, prompt: prompt, contextLength: engine.contextLength,
            defaultMaxTokens: engine.contextLength - prompt.count, topLogprobs: body.engineTopLogprobs,
            stopTokens: ChatCompletionRequest.stopTokens(engine.tokenizer, template: template), promptParam: "messages")
        let format = ChatCompletionFormat(
            identity: identity, wantsLogprobs: body.logprobs, includeUsage: parameters.includeUsage, tokenizer: engine.tokenizer)
        return try await responder.respond(
            to: request, generation: generation, format: format,
            options: .init(stream: parameters.stream, includeUsage: parameters.includeUsage, promptParam: "messages"), timing: timing)
    }

    func models() -> Response {
        jsonResponse(ModelList(data: [.init(id: engine.modelName, created: startTime, maxModelLength: engine.contextLength)]))
    }

    /// The body's bytes: refused with 413 past `maxBodyBytes`, before reading it when Content-Length
    /// already says so, else as soon as the bytes read pass the limit (chunked bodies).
    ///
    /// The bytes read are put back as the request's body: `consumeWithCancellationOnInboundClose`
    /// (GenerationResponder) needs a collected body to replay before it watches the connection (on
    /// a body consumed and not put back, Hummingbird 2.28 traps).
    private func readBody(_ request: inout Request) async throws(APIError) -> [UInt8] {
        let limit = configuration.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw .bodyTooLarge(limit: limit)
        }
        var collected = ByteBuffer()
        do {
            for try await var buffer in request.body {
                guard collected.readableBytes + buffer.readableBytes <= limit else { throw APIError.bodyTooLarge(limit: limit) }
                collected.writeBuffer(&buffer)
            }
        } catch let error as APIError {
            throw error
        } catch {
            throw .invalidRequest("the request body could not be read: \(error)")
        }
        request.body = RequestBody(buffer: collected)
        return Array(collected.readableBytesView)
    }

    private func checkModel(_ requested: String) throws(APIError) {
        guard requested == engine.modelName else { throw .modelNotFound(requested, served: engine.modelName) }
    }

    private func newIdentity(prefix: String) -> CompletionIdentity {
        var generator = SystemRandomNumberGenerator()
        let id = prefix + (0..<24).map { _ in String(UInt8.random(in: 0..<16, using: &generator), radix: 16) }.joined()
        return CompletionIdentity(id: id, created: Int(Date().timeIntervalSince1970), model: engine.modelName)
    }
}

/// `GET /v1/models`: the one model this server serves.
public struct ModelList: Codable, Sendable {
    public struct Model: Codable, Sendable {
        public var id: String
        public var object = "model"
        public var created: Int
        public var ownedBy = "comet"
        /// vLLM's extension: the context length, prompt plus generated tokens.
        public var maxModelLength: Int

        enum CodingKeys: String, CodingKey {
            case id, object, created
            case ownedBy = "owned_by"
            case maxModelLength = "max_model_len"
        }
    }

    public var object = "list"
    public var data: [Model]
}
