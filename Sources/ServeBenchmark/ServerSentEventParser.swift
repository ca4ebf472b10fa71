import NIOCore

/// Splits a server-sent event stream, arriving in arbitrary pieces, into the payloads of its
/// `data:` lines (OpenAI sends one `data:` line per event, events end with a blank line).
struct ServerSentEventParser {
    private var pending: [UInt8] = []

    /// The payloads of the events that `piece` completes, in order.
    mutating func append(_ piece: ByteBuffer) -> [String] {
        pending += piece.readableBytesView
        var payloads: [String] = []
        var start = 0
        var index = 0
        while index + 1 < pending.count {
            if pending[index] == UInt8(ascii: "\n") && pending[index + 1] == UInt8(ascii: "\n") {
                payloads += Self.dataPayloads(pending[start..<index])
                start = index + 2
                index = start
            } else {
                index += 1
            }
        }
        pending.removeFirst(start)
        return payloads
    }

    /// What is left unterminated (a stream that ended mid-event).
    var remainder: String { String(decoding: pending, as: UTF8.self) }

    private static func dataPayloads(_ event: ArraySlice<UInt8>) -> [String] {
        String(decoding: event, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard line.hasPrefix("data:") else { return nil }  // comments (":") and other fields
            let payload = line.dropFirst("data:".count)
            return String(payload.first == " " ? payload.dropFirst() : payload)
        }
    }
}
