import Engine
import FoundationEssentials
import Hummingbird

/// An error as the OpenAI API reports it: an HTTP status and the body
/// `{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}` (`param` and `code` may be null).
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    /// OpenAI's error class: "invalid_request_error", "rate_limit_error", "server_error".
    public var type: String
    /// The request parameter at fault, e.g. "messages.0.role".
    public var param: String?
    /// A stable machine-readable code, e.g. "model_not_found".
    public var code: String?

    public init(status: HTTPResponse.Status, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { "\(status.code) \(message)" }

    /// 400: the request is wrong in a way the caller can fix.
    static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: code)
    }

    /// 400: a parameter this server does not implement (or that does not exist); never ignored silently.
    static func unsupportedParameter(_ name: String) -> APIError {
        .invalidRequest("unsupported parameter '\(name)': comet does not implement it", param: name, code: "unsupported_parameter")
    }

    static func modelNotFound(_ requested: String, served: String) -> APIError {
        APIError(
            status: .notFound, message: "the model '\(requested)' does not exist; this server serves '\(served)'",
            type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    static let unauthorized = APIError(
        status: .unauthorized, message: "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
        type: "invalid_request_error", code: "invalid_api_key")

    static func bodyTooLarge(limit: Int) -> APIError {
        APIError(
            status: .contentTooLarge, message: "the request body is larger than this server accepts (\(limit) bytes)",
            type: "invalid_request_error", code: "request_too_large")
    }

    static func notFound(_ path: String) -> APIError {
        APIError(status: .notFound, message: "no route for \(path)", type: "invalid_request_error", code: "not_found")
    }

    static func internalError(_ message: String) -> APIError {
        APIError(status: .internalServerError, message: message, type: "server_error")
    }

    /// The API's view of an engine refusal or failure. `promptParam` names what held the prompt
    /// ("prompt" or "messages").
    init(_ error: EngineError, promptParam: String) {
        switch error {
        case .promptTooLong:
            self = .invalidRequest(error.description, param: promptParam, code: "context_length_exceeded")
        case .exceedsCache:
            self = .invalidRequest(error.description, param: "max_tokens", code: "context_length_exceeded")
        case .invalidRequest:
            self = .invalidRequest(error.description)
        case .overloaded:
            self = APIError(status: .tooManyRequests, message: error.description, type: "rate_limit_error", code: "overloaded")
        case .stopped:
            self = APIError(status: .serviceUnavailable, message: error.description, type: "server_error", code: "engine_stopped")
        case .runnerFailed:
            self = .internalError(error.description)
        }
    }

    /// An error thrown by the engine, whatever its type.
    init(engineFailure error: any Error, promptParam: String) {
        if let engineError = error as? EngineError {
            self.init(engineError, promptParam: promptParam)
        } else {
            self = .internalError("generation failed: \(error)")
        }
    }

    /// The wire form, `{"error": {...}}`.
    var body: ErrorBody { ErrorBody(error: .init(message: message, type: type, param: param, code: code)) }
}

/// `{"error": {"message", "type", "param", "code"}}`; `param` and `code` are written as null when absent.
struct ErrorBody: Codable, Sendable {
    struct Detail: Codable, Sendable {
        var message: String
        var type: String
        var param: String?
        var code: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(message, forKey: .message)
            try container.encode(type, forKey: .type)
            try container.encode(param, forKey: .param)
            try container.encode(code, forKey: .code)
        }
    }

    var error: Detail
}

extension APIError: HTTPResponseError {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        jsonResponse(body, status: status)
    }
}
