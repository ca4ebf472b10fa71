import Model

/// Turns a request's generated tokens into the `GeneratedToken`s its stream yields: streaming
/// detokenization, and stop strings.
///
/// A token is yielded once all of its text is known: while the text so far ends in an unfinished
/// UTF-8 character or in what may be the start of a stop string, tokens are held back; when the doubt
/// is resolved they are yielded together, the text on the last of them. A stop string ends the text
/// just before it: it is never yielded, nor anything after it. The concatenated texts are the decoded
/// tokens up to the first stop string.
struct GeneratedTextStream {
    private var detokenizer: StreamingDetokenizer
    /// Stop strings as UTF-8 (matching bytes, not Characters: "\n" must stop "\r\n" too).
    private let stopStrings: [[UInt8]]
    /// Decoded text not yet yielded: it may begin a stop string.
    private var held: [UInt8] = []
    /// Tokens not yet yielded, and the text that is certain to follow them.
    private var pending: [GeneratedToken] = []
    private var released: [UInt8] = []

    /// - Parameter prompt: what the tokens continue (SentencePiece keeps the first one's leading space
    ///   after text, as vLLM's output text does).
    init(tokenizer: any Tokenizer, prompt: [Int32], stopStrings: [String]) {
        detokenizer = StreamingDetokenizer(tokenizer: tokenizer, continuingText: prompt.contains { !tokenizer.isControl($0) })
        self.stopStrings = stopStrings.map { Array($0.utf8) }.filter { !$0.isEmpty }
    }

    /// Adds one generated token (its `text` is filled in here). Returns the tokens ready to yield,
    /// and whether the text now contains a stop string (generation must end; the returned tokens are
    /// then the last ones).
    mutating func append(_ token: GeneratedToken) -> (ready: [GeneratedToken], stopped: Bool) {
        held.append(contentsOf: detokenizer.append(token.token).utf8)
        pending.append(token)
        // Any stop string starts inside `held` (the released text never ends in one's beginning).
        if let stop = firstStopString() {
            released.append(contentsOf: held[..<stop])
            held.removeAll()
            return (flush(), true)
        }
        let doubtful = longestStopPrefixSuffix()
        released.append(contentsOf: held[..<(held.count - doubtful)])
        held.removeFirst(held.count - doubtful)
        guard doubtful == 0, !detokenizer.isHoldingBytes else { return ([], false) }
        return (flush(), false)
    }

    /// Ends the stream (a stop token, the token limit): whatever was held back, now certain not to be
    /// a stop string, goes out with the pending tokens.
    mutating func finish() -> [GeneratedToken] {
        released.append(contentsOf: held)
        held.removeAll()
        released.append(contentsOf: detokenizer.finish().utf8)
        return flush()
    }

    /// The pending tokens, the released text on the last one.
    private mutating func flush() -> [GeneratedToken] {
        guard !pending.isEmpty else { return [] }
        var tokens = pending
        tokens[tokens.count - 1].text = String(decoding: released, as: UTF8.self)
        pending.removeAll()
        released.removeAll()
        return tokens
    }

    /// Where the earliest stop string in `held` begins.
    private func firstStopString() -> Int? {
        var first: Int?
        for stop in stopStrings where stop.count <= held.count {
            for start in 0...(held.count - stop.count) where first.map({ start < $0 }) ?? true {
                if held[start..<(start + stop.count)].elementsEqual(stop) {
                    first = start
                    break
                }
            }
        }
        return first
    }

    /// The length of the longest end of `held` that a stop string begins with (shorter than that
    /// stop string: a whole one was found by `firstStopString`).
    private func longestStopPrefixSuffix() -> Int {
        let longest = min(held.count, (stopStrings.map(\.count).max() ?? 1) - 1)
        guard longest > 0 else { return 0 }
        for length in stride(from: longest, through: 1, by: -1) {
            let suffix = held[(held.count - length)...]
            if stopStrings.contains(where: { $0.count > length && $0.starts(with: suffix) }) { return length }
        }
        return 0
    }
}
