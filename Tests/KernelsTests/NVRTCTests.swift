@testable import CUDA
import Foundation
import Testing

/// NVRTC needs no GPU; these run wherever `loadNVRTC()` finds it (always in CI).
@Suite struct NVRTCTests {
    @Test func compilesAKernelToACubin() throws {
        guard let nvrtc = try loadNVRTC() else { return }
        #expect(nvrtc.version.major >= 12)
        let source = #"extern "C" __global__ void scale(float* x, float s) { x[threadIdx.x] *= s; }"#
        let (cubin, _) = try nvrtc.compile(source: source, name: "scale.cu", arch: "sm_80")
        #expect(Array(cubin.prefix(4)) == [0x7f, 0x45, 0x4c, 0x46])  // an ELF image
    }

    @Test func compileErrorsNameFileAndLine() throws {
        guard let nvrtc = try loadNVRTC() else { return }
        let source = "extern \"C\" __global__ void broken() {\n  undeclared_thing = 1;\n}\n"
        #expect {
            _ = try nvrtc.compile(source: source, name: "broken.cu", arch: "sm_90a")
        } throws: { error in
            guard case let CUDAError.compilation(name, arch, log) = error else { return false }
            return name == "broken.cu" && arch == "sm_90a" && log.contains("broken.cu(2)") && log.contains("undeclared_thing")
        }
    }

    @Test func headersResolveByName() throws {
        guard let nvrtc = try loadNVRTC() else { return }
        let source = "#include \"twice.cuh\"\nextern \"C\" __global__ void k(int* x) { x[0] = TWICE(21); }\n"
        let (cubin, _) = try nvrtc.compile(
            source: source, name: "k.cu", headers: [("twice.cuh", "#define TWICE(v) (2 * (v))\n")], arch: "sm_89")
        #expect(!cubin.isEmpty)
    }
}
