// Build-time tool: EmbedKernelSources OUTPUT.swift FILE...
// Writes `KernelSource.embedded`, one raw string literal per file, in the order given.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func readFile(_ path: String) -> String {
    guard let file = fopen(path, "rb") else { fatalError("cannot read \(path)") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

let arguments = CommandLine.arguments
guard arguments.count >= 2 else { fatalError("usage: EmbedKernelSources OUTPUT.swift FILE...") }
var swift = "// Generated at build time by EmbedKernelSources from Sources/Kernels/cuda: do not edit.\n"
swift += "extension KernelSource {\n    public static let embedded: [KernelSource] = [\n"
for path in arguments.dropFirst(2) {
    let text = readFile(path)
    let name = String(path.split(separator: "/").last!)
    // Enough #s that the text cannot close the raw literal early.
    var hashes = "#"
    while text.contains("\"" + hashes) || text.contains("\\" + hashes) { hashes += "#" }
    swift += "        KernelSource(name: \"\(name)\", text: \(hashes)\"\"\"\n\(text)\n\"\"\"\(hashes)),\n"
}
swift += "    ]\n}\n"
guard let out = fopen(arguments[1], "wb") else { fatalError("cannot write \(arguments[1])") }
fputs(swift, out)
fclose(out)
