import CUDA

/// Median of `iterations` event-timed runs of `body` on `stream`, after `warmup` untimed runs.
/// Milliseconds.
func medianMilliseconds(
    on stream: CUDAStream, warmup: Int, iterations: Int, _ body: () throws -> Void
) throws -> Double {
    for _ in 0..<warmup { try body() }
    try stream.synchronize()
    var times: [Double] = []
    times.reserveCapacity(iterations)
    for _ in 0..<iterations { times.append(try stream.time(body)) }
    times.sort()
    return times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
}

/// `value` with `digits` decimals.
func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    let whole = Int(scaled / scale)
    var fraction = String(Int(scaled - Double(whole) * scale))
    while fraction.count < digits { fraction = "0" + fraction }
    return (value < 0 ? "-" : "") + (digits > 0 ? "\(whole).\(fraction)" : "\(whole)")
}

func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}
