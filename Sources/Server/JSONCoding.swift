import FoundationEssentials
import Hummingbird

// The one place that turns JSON into values and back: the encoder every response uses, and the
// request decoder that maps every decoding failure to a 400 naming the parameter at fault.

/// Encodes `value` the way every response body is written: compact, keys sorted (the same bytes
/// for the same value), slashes unescaped.
func encodeJSON(_ value: some Encodable) -> ByteBuffer {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    do {
        return ByteBuffer(bytes: try encoder.encode(value))
    } catch {
        // Only non-finite floats can fail here, and `finiteLogprob` keeps them out of every body.
        preconditionFailure("response encoding failed: \(error)")
    }
}

/// A JSON response with `value` as its body.
func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
    let body = encodeJSON(value)
    var headers = headers
    headers[.contentType] = "application/json"
    headers[.contentLength] = String(body.readableBytes)
    return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: body))
}

/// Decodes a request body of type `T`; every failure becomes a 400 whose `param` is the path of the
/// offending value ("messages.1.content").
func decodeRequestBody<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws(APIError) -> T {
    guard String(validating: bytes, as: UTF8.self) != nil else {
        throw .invalidRequest("the request body is not valid UTF-8", code: "invalid_utf8")
    }
    do {
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    } catch let error as APIError {
        throw error
    } catch let DecodingError.typeMismatch(_, context) where context.codingPath.isEmpty {
        throw .invalidRequest("the request body must be a JSON object", code: "invalid_json")
    } catch let DecodingError.typeMismatch(expected, context) {
        let param = parameterPath(context.codingPath)
        throw .invalidRequest("'\(param)' has the wrong type: expected \(jsonTypeName(expected))", param: param, code: "invalid_type")
    } catch let DecodingError.valueNotFound(expected, context) {
        let param = parameterPath(context.codingPath)
        throw .invalidRequest("'\(param)' must be \(jsonTypeName(expected)), not null", param: param, code: "invalid_type")
    } catch let DecodingError.keyNotFound(key, context) {
        let param = parameterPath(context.codingPath + [key])
        throw .invalidRequest("missing required parameter '\(param)'", param: param, code: "missing_parameter")
    } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
        let param = parameterPath(context.codingPath)
        throw .invalidRequest("'\(param)' is invalid: \(context.debugDescription)", param: param)
    } catch {
        throw .invalidRequest("the request body is not valid JSON: \(underlyingMessage(error))", code: "invalid_json")
    }
}

/// "messages.1.content" for a coding path.
func parameterPath(_ path: [any CodingKey]) -> String {
    path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
}

/// The JSON name of a Swift type that a request value was expected to have.
private func jsonTypeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Bool.Type: "a boolean"
    case is Int.Type, is Int64.Type, is Int32.Type, is UInt64.Type: "an integer"
    case is Double.Type, is Float.Type: "a number"
    default: "\(type)".hasPrefix("Array") ? "an array" : "an object"
    }
}

private func underlyingMessage(_ error: any Error) -> String {
    if case let DecodingError.dataCorrupted(context) = error {
        if let underlying = context.underlyingError { return "\(underlying)" }
        return context.debugDescription
    }
    return "\(error)"
}

/// Any JSON object key: lets a decoder list the keys a request sent.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// Throws a 400 naming the first key of this JSON object that is not in `allowed`, with the
    /// object's path in front ("messages.0.name"): unknown parameters are refused, never ignored.
    func refuseUnknownKeys(allowed: Set<String>) throws {
        let container = try container(keyedBy: AnyCodingKey.self)
        let unknown = container.allKeys.map(\.stringValue).filter { !allowed.contains($0) }.sorted()
        if let first = unknown.first {
            throw APIError.unsupportedParameter(parameterPath(codingPath + [AnyCodingKey(stringValue: first)]))
        }
    }
}

extension KeyedDecodingContainer {
    /// An integer parameter, or nil when absent or null. A number that is not an integer of `T`
    /// (2.5, 1e30) is a 400 naming the parameter: JSONDecoder itself would report it as "not valid
    /// JSON" with no path at all.
    func decodeIntegerIfPresent<T: FixedWidthInteger & Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let value = try? decode(T.self, forKey: key) { return value }
        if let number = try? decode(Double.self, forKey: key) {
            let param = parameterPath(codingPath + [key])
            throw APIError.invalidRequest("'\(param)' must be an integer, not \(number)", param: param, code: "invalid_type")
        }
        return try decode(T.self, forKey: key)  // not a number: the type mismatch, with its path
    }
}
