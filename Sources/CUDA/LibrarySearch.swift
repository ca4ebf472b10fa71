import FoundationEssentials

/// Where to look for the CUDA driver and NVRTC. Built once at the edge (the CLI, from flags
/// and the environment) and passed down; nothing below reads the environment.
public struct LibrarySearch: Sendable, Equatable {
    /// Library files or folders named explicitly (a `--nvrtc` flag, `COMET_NVRTC`); tried first.
    public var explicitPaths: [String]
    /// CUDA toolkit roots: `CUDA_HOME`, `CUDA_PATH`, `/usr/local/cuda`.
    public var toolkitRoots: [String]
    /// Python site-packages folders whose NVIDIA wheels (`nvidia/cu13/lib`) may hold NVRTC.
    public var sitePackages: [String]

    public init(explicitPaths: [String] = [], toolkitRoots: [String] = [], sitePackages: [String] = []) {
        self.explicitPaths = explicitPaths
        self.toolkitRoots = toolkitRoots
        self.sitePackages = sitePackages
    }

    /// The usual places, given the process environment: explicit settings, toolkit roots,
    /// then the site-packages of the active virtualenv, of every python3 on PATH, of pyenv
    /// and of the user and system installs.
    public static func standard(environment env: [String: String]) -> LibrarySearch {
        var explicit: [String] = []
        if let path = env["COMET_NVRTC"], !path.isEmpty { explicit.append(path) }
        var roots: [String] = []
        for key in ["CUDA_HOME", "CUDA_PATH"] {
            if let root = env[key], !root.isEmpty { roots.append(root) }
        }
        roots.append("/usr/local/cuda")

        var prefixes: [String] = []
        if let venv = env["VIRTUAL_ENV"], !venv.isEmpty { prefixes.append(venv) }
        for dir in (env["PATH"] ?? "").split(separator: ":") where dir.hasSuffix("/bin") {
            if FileManager.default.fileExists(atPath: "\(dir)/python3") {
                prefixes.append(String(dir.dropLast(4)))
            }
        }
        let home = env["HOME"] ?? "/root"
        let pyenv = env["PYENV_ROOT"] ?? "\(home)/.pyenv"
        prefixes += listDirectory("\(pyenv)/versions").map { "\(pyenv)/versions/\($0)" }
        prefixes += ["\(home)/.local", "/usr/local", "/usr"]

        var sites: [String] = []
        for prefix in prefixes {
            for python in listDirectory("\(prefix)/lib") where python.hasPrefix("python3") {
                for kind in ["site-packages", "dist-packages"] {
                    let site = "\(prefix)/lib/\(python)/\(kind)"
                    if FileManager.default.fileExists(atPath: "\(site)/nvidia") { sites.append(site) }
                }
            }
        }
        return LibrarySearch(explicitPaths: explicit, toolkitRoots: unique(roots), sitePackages: unique(sites))
    }

    /// Candidate files for a library, most specific first. A bare soname comes last so that
    /// the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache) is tried too.
    func candidates(sonames: [String], wheelFolders: [String]) -> [String] {
        var paths: [String] = []
        // An explicit file counts only for its own library (a --nvrtc file is not NCCL).
        let stems = sonames.map { String($0.prefix { $0 != "." }) }
        for path in explicitPaths {
            if path.hasSuffix(".so") || path.contains(".so.") {
                let file = path.split(separator: "/").last.map(String.init) ?? path
                if stems.contains(where: { file.hasPrefix($0) }) { paths.append(path) }
            } else {
                paths += sonames.map { "\(path)/\($0)" }
            }
        }
        for root in toolkitRoots {
            for lib in ["lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"] {
                paths += sonames.map { "\(root)/\(lib)/\($0)" }
            }
        }
        for site in sitePackages {
            for folder in wheelFolders {
                paths += sonames.map { "\(site)/nvidia/\(folder)/\($0)" }
            }
        }
        return unique(paths) + sonames
    }

    /// Opens the first candidate that loads. Every path tried is listed in the error.
    func open(sonames: [String], wheelFolders: [String], name: String) throws -> DynamicLibrary {
        var tried: [String] = []
        for candidate in candidates(sonames: sonames, wheelFolders: wheelFolders) {
            // A path that does not exist is skipped quietly; a bare soname goes to the loader.
            if candidate.hasPrefix("/"), !FileManager.default.fileExists(atPath: candidate) {
                tried.append(candidate)
                continue
            }
            switch DynamicLibrary.open(candidate) {
            case .success(let library): return library
            case .failure(let error): tried.append("\(candidate) (\(error))")
            }
        }
        throw CUDAError.libraryNotFound(name: name, searched: tried)
    }
}

private func listDirectory(_ path: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
}

private func unique(_ paths: [String]) -> [String] {
    var seen = Set<String>()
    return paths.filter { seen.insert($0).inserted }
}
