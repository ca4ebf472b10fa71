import ArgumentParser
import CUDA
import FoundationEssentials
import Kernels

#if canImport(Glibc)
import Glibc
#endif

struct Env: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what this machine offers: CPU, CUDA driver, GPU, NVRTC and the kernel cache.")

    @OptionGroup var gpu: GPUOptions

    func run() throws {
        let cpu = HostCPU.current()
        print("CPU:          \(cpu.cores) cores, \(cpu.architecture), SIMD: \(cpu.simd.isEmpty ? "none detected" : cpu.simd.joined(separator: " "))")
        do {
            let driver = try CUDADriver.load(search: gpu.librarySearch)
            print("CUDA driver:  \(driver.versionString) (\(driver.libraryPath))")
            let count = try driver.deviceCount()
            if count == 0 { print("GPU:          none") }
            for ordinal in 0..<count {
                let d = try driver.device(ordinal)
                let gib = Double(d.totalMemoryBytes) / Double(1 << 30)
                print("GPU \(ordinal):        \(d.name), compute capability \(d.computeCapability.major).\(d.computeCapability.minor) "
                    + "(\(d.architecture)), \(d.multiprocessorCount) SMs, \(Int(gib.rounded())) GiB, L2 \(d.l2CacheBytes >> 20) MiB, "
                    + "\(d.maxSharedMemoryPerBlock >> 10) KiB shared memory per block")
            }
        } catch {
            print("CUDA driver:  unavailable: \(error)")
            print("              the CPU backend still runs everything")
        }
        do {
            let nvrtc = try NVRTC.load(search: gpu.librarySearch)
            print("NVRTC:        \(nvrtc.versionString) (\(nvrtc.libraryPath)), headers: \(nvrtc.includeDirectory ?? "not found")")
        } catch {
            print("NVRTC:        unavailable: \(error)")
        }
        do {
            let nccl = try gpu.loadNCCL()
            print("NCCL:         \(nccl.versionString) (\(nccl.libraryPath)): --tensor-parallel available")
        } catch {
            print("NCCL:         unavailable (--tensor-parallel needs it): \(error)")
        }
        if let dir = gpu.cacheDirectory {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir))?.filter { $0.hasSuffix(".cubin") } ?? []
            print("Kernel cache: \(dir) (\(entries.count) cubins)")
        } else {
            print("Kernel cache: off")
        }
        print("Kernels:      \(KernelSource.units.count) sources embedded (\(KernelSource.units.map(\.name).joined(separator: ", ")))")
    }
}

/// The host CPU: core count and the SIMD extensions the CPU backend can use.
struct HostCPU {
    var cores: Int
    var architecture: String
    var simd: [String]

    /// Read from sysconf and /proc/cpuinfo; fields that cannot be read are left empty.
    static func current() -> HostCPU {
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #if arch(x86_64)
        let architecture = "x86_64"
        let wanted = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile"]
        #elseif arch(arm64)
        let architecture = "arm64"
        let wanted = ["asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2"]
        #else
        let architecture = "unknown"
        let wanted: [String] = []
        #endif
        let text = (FileManager.default.contents(atPath: "/proc/cpuinfo")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("flags") || $0.hasPrefix("Features") } ?? ""
        let flags = Set(line.split(separator: ":").last?.split(separator: " ").map(String.init) ?? [])
        return HostCPU(cores: cores, architecture: architecture, simd: wanted.filter(flags.contains))
    }
}
