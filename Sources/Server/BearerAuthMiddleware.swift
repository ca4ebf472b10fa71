import Hummingbird

/// `--api-key`: every `/v1` route needs `Authorization: Bearer KEY`; other routes (health, metrics)
/// stay open. The key is compared in constant time, so response timing does not reveal how much of
/// a guess was right.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: [UInt8]

    init(key: String) {
        self.key = Array(key.utf8)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard path == "/v1" || path.hasPrefix("/v1/") else { return try await next(request, context) }
        guard let header = request.headers[.authorization], let presented = Self.bearerToken(header),
              Self.constantTimeEquals(Array(presented.utf8), key)
        else { throw APIError.unauthorized }
        return try await next(request, context)
    }

    /// The token of "Bearer TOKEN" (the scheme is case-insensitive, as RFC 9110 says).
    static func bearerToken(_ header: String) -> Substring? {
        guard let space = header.firstIndex(of: " "), header[..<space].lowercased() == "bearer" else { return nil }
        let token = header[space...].drop { $0 == " " }
        return token.isEmpty ? nil : token
    }

    /// True when `presented` equals `expected`. Every byte of `expected` is always compared, so the
    /// time taken depends on the key's length only, never on where a guess first differs.
    static func constantTimeEquals(_ presented: [UInt8], _ expected: [UInt8]) -> Bool {
        var difference: UInt8 = presented.count == expected.count ? 0 : 1
        for index in expected.indices {
            difference |= expected[index] ^ (index < presented.count ? presented[index] : 0)
        }
        return difference == 0
    }
}
