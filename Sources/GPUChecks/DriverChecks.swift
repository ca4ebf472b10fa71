import CUDA
import CPUReference

/// Checks of the CUDA layer itself: transfers, error reporting, events.
enum DriverChecks {
    static let all = [pinnedRoundTrip, errorNames, eventTiming]

    /// Asynchronous upload and download through pinned memory give back the same bits.
    static let pinnedRoundTrip = GPUCheck("driver.pinned-round-trip") { env in
        let count = 1 << 20 + 3
        let values = (0..<count).map { _ in Float(bitPattern: UInt32.random(in: 0..<0x7f00_0000, using: &env.random)) }
        let host = try env.context.allocatePinned(Float.self, count: count)
        let back = try env.context.allocatePinned(Float.self, count: count)
        for i in 0..<count { host[i] = values[i]; back[i] = .nan }
        let device = try env.context.allocate(Float.self, count: count)
        try device.fill(byte: 0xA5, on: env.stream)
        try device.copy(from: host, on: env.stream)
        try device.copy(to: back, on: env.stream)
        try env.stream.synchronize()
        try expectEqual(Array(back.buffer).map(\.bitPattern), values.map(\.bitPattern), "pinned round trip")
        return "\(count) floats"
    }

    /// A failing call names itself and its CUresult.
    static let errorNames = GPUCheck("driver.error-names") { env in
        do {
            _ = try env.context.allocate(UInt8.self, count: 1 << 52)
            throw CheckFailure("a 4 PiB allocation succeeded")
        } catch let error as CUDAError {
            guard case let .driver(call, _, name, _) = error, call.hasPrefix("cuMemAlloc"), name == "CUDA_ERROR_OUT_OF_MEMORY" else {
                throw CheckFailure("unexpected error for a 4 PiB allocation: \(error)")
            }
            return "\(error)"
        }
    }

    /// Events time real work: a longer copy takes longer.
    static let eventTiming = GPUCheck("driver.event-timing") { env in
        let small = try env.context.allocate(UInt8.self, count: 1 << 20)
        let smallCopy = try env.context.allocate(UInt8.self, count: 1 << 20)
        let large = try env.context.allocate(UInt8.self, count: 1 << 30)
        let largeCopy = try env.context.allocate(UInt8.self, count: 1 << 30)
        try large.fill(byte: 0x5A, on: env.stream)
        try small.fill(byte: 0x5A, on: env.stream)
        let tSmall = try env.stream.time { try smallCopy.copy(from: small, on: env.stream) }
        let tLarge = try env.stream.time { try largeCopy.copy(from: large, on: env.stream) }
        guard tSmall > 0, tLarge.isFinite, tLarge > tSmall else {
            throw CheckFailure("1 MiB copy took \(tSmall) ms and 1 GiB took \(tLarge) ms")
        }
        return "1 MiB in \(format(tSmall)) ms, 1 GiB in \(format(tLarge)) ms"
    }
}

func format(_ value: Double, digits: Int = 3) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    return "\(rounded)"
}
