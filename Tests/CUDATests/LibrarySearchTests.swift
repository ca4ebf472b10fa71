@testable import CUDA
import Foundation
import Testing

@Suite struct LibrarySearchTests {
    @Test func candidatesGoFromExplicitToLoaderPath() {
        let search = LibrarySearch(
            explicitPaths: ["/opt/x/libnvrtc.so.13", "/opt/dir"], toolkitRoots: ["/cuda"], sitePackages: ["/site"])
        let paths = search.candidates(sonames: ["libnvrtc.so.13"], wheelFolders: ["cu13/lib"])
        #expect(paths.first == "/opt/x/libnvrtc.so.13")
        #expect(paths[1] == "/opt/dir/libnvrtc.so.13")
        #expect(paths.contains("/cuda/lib64/libnvrtc.so.13"))
        #expect(paths.contains("/site/nvidia/cu13/lib/libnvrtc.so.13"))
        #expect(paths.last == "libnvrtc.so.13")  // the dynamic loader's own search comes last
        #expect(paths.firstIndex(of: "/cuda/lib64/libnvrtc.so.13")! < paths.firstIndex(of: "/site/nvidia/cu13/lib/libnvrtc.so.13")!)
        // An explicit NVRTC file is not a candidate for another library; an explicit folder is.
        let nccl = search.candidates(sonames: ["libnccl.so.2"], wheelFolders: ["nccl/lib"])
        #expect(!nccl.contains("/opt/x/libnvrtc.so.13") && nccl.first == "/opt/dir/libnccl.so.2")
        #expect(nccl.contains("/site/nvidia/nccl/lib/libnccl.so.2"))
    }

    @Test func aMissingLibraryListsWhereItLooked() {
        let search = LibrarySearch(explicitPaths: ["/nonexistent/folder"])
        #expect {
            _ = try search.open(sonames: ["libcomet-does-not-exist.so.1"], wheelFolders: [], name: "Nothing")
        } throws: { error in
            guard case let CUDAError.libraryNotFound(name, searched) = error else { return false }
            return name == "Nothing" && searched.contains("/nonexistent/folder/libcomet-does-not-exist.so.1")
                && "\(error)".contains("not found")
        }
    }

    @Test func aMissingSymbolIsNamed() throws {
        let libc = try DynamicLibrary.open("libc.so.6").get()
        typealias Strlen = @convention(c) (UnsafePointer<CChar>) -> Int
        let strlen: Strlen = try libc.function("strlen")
        #expect(strlen("comet") == 5)
        #expect(throws: CUDAError.symbolMissing(library: "libc.so.6", symbol: "cuNothing_v9 or cuNothing")) {
            let _: Strlen = try libc.function("cuNothing_v9", "cuNothing")
        }
    }

    @Test func standardSearchFindsWheelSitePackages() throws {
        // A fake virtualenv holding an NVIDIA wheel folder is picked up from VIRTUAL_ENV.
        let venv = FileManager.default.temporaryDirectory.appendingPathComponent("comet-venv-\(UUID())")
        let site = venv.appendingPathComponent("lib/python3.12/site-packages")
        try FileManager.default.createDirectory(at: site.appendingPathComponent("nvidia/cu13/lib"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: venv) }
        let search = LibrarySearch.standard(environment: ["VIRTUAL_ENV": venv.path, "CUDA_HOME": "/my/cuda", "HOME": "/nonexistent"])
        #expect(search.sitePackages.contains(site.path))
        #expect(search.toolkitRoots.first == "/my/cuda")
        #expect(search.toolkitRoots.contains("/usr/local/cuda"))
    }

    @Test func noDriverIsOneClearError() throws {
        // Meaningful only where no driver is installed (CI); a GPU machine runs check-gpu instead.
        guard case .failure = DynamicLibrary.open("libcuda.so.1") else { return }
        #expect {
            _ = try CUDADriver.load()
        } throws: { error in
            "\(error)".contains("CUDA driver (libcuda.so.1) not found")
        }
    }
}
