import Hummingbird

/// The outermost middleware: turns every error into an OpenAI-style error response (so 404s and
/// framework errors look like the API's own) and counts each answered request by route and status.
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = jsonResponse(error.body, status: error.status)
        } catch let error as HTTPError {
            let apiError = switch error.status {
            case .notFound: APIError.notFound(request.uri.path)
            default: APIError(
                status: error.status, message: error.body ?? error.status.reasonPhrase,
                type: error.status.kind == .serverError ? "server_error" : "invalid_request_error")
            }
            response = jsonResponse(apiError.body, status: apiError.status)
        } catch is CancellationError {
            throw CancellationError()  // the client is gone: nothing to answer
        } catch {
            let apiError = APIError.internalError("internal error: \(error)")
            response = jsonResponse(apiError.body, status: apiError.status)
        }
        // A matched route's pattern, never the raw path, so the label set stays bounded.
        let endpoint = context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
        metrics.recordRequest(endpoint: endpoint, status: response.status.code)
        return response
    }
}
