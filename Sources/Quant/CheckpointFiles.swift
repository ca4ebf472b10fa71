import FoundationEssentials
import Glibc

/// The file-system steps of an atomic checkpoint write and of loading, on POSIX calls so that
/// data reaches the disk (fsync) before the rename that publishes it.
enum CheckpointFiles {
    /// Creates `path` and writes `chunks` in order, then fsyncs and closes it. `beforeChunk(i)`
    /// runs before chunk i and may throw to abort (the caller removes the partial folder).
    static func write(_ path: String, chunks: [[UInt8]], beforeChunk: (Int) throws -> Void) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(path, "open") }
        defer { close(fd) }
        for (i, chunk) in chunks.enumerated() {
            try beforeChunk(i)
            try chunk.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw failure(path, "write") }
                    done += n
                }
            }
        }
        guard fsync(fd) == 0 else { throw failure(path, "fsync") }
    }

    /// fsync of a directory, so a rename or a new entry in it survives a crash.
    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(path, "open") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure(path, "fsync") }
    }

    static func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 else { throw failure(path, "mkdir") }
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw failure(to, "rename from \(from)") }
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// The whole file; a missing or unreadable file is `.unreadable`.
    static func read(_ path: String) throws(CheckpointError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(info.st_size)
        var failed: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            var done = 0
            while done < size {
                let n = Glibc.read(fd, buffer.baseAddress! + done, size - done)
                if n < 0 && errno == EINTR { continue }
                if n < 0 { failed = errno; break }
                if n == 0 { break }  // shrank while reading
                done += n
            }
            count = done
        }
        guard failed == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(failed))) }
        return bytes
    }

    /// The folder that holds `path` ("." for a bare name) and the last component.
    static func split(_ path: String) -> (parent: String, name: String) {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return (".", trimmed) }
        let parent = String(trimmed[..<slash])
        return (parent.isEmpty ? "/" : parent, String(trimmed[trimmed.index(after: slash)...]))
    }

    private static func failure(_ path: String, _ call: String) -> CheckpointError {
        .writeFailed(path: path, reason: "\(call): \(String(cString: strerror(errno)))")
    }
}
