import Glibc

/// A whole file mapped read-only into memory: model weights are read from the page cache in place,
/// never copied into a second buffer. The mapping lives as long as this object.
final class MappedFile: @unchecked Sendable {
    // @unchecked: immutable after init, and the mapping is PROT_READ.

    let path: String
    /// The file's bytes (empty for an empty file).
    let bytes: UnsafeRawBufferPointer

    /// Maps the file at `path`; `ModelError.cannotOpen` when it cannot be opened or mapped.
    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ModelError.cannotOpen(path: path, errno: errno) }
        defer { close(fd) }  // the mapping stays valid after the descriptor is closed
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ModelError.cannotOpen(path: path, errno: errno) }
        let size = Int(info.st_size)
        // mmap of an empty file fails; an empty mapping lets the format readers report it as truncated.
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0),
              address != UnsafeMutableRawPointer(bitPattern: -1)
        else { throw ModelError.cannotOpen(path: path, errno: errno) }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }

    var count: Int { bytes.count }
}
