// C types of the CUDA driver API, spelled as Swift sees them through dlsym.
typealias CUresult = Int32
typealias CUdevice = Int32
/// A device address (`CUdeviceptr`).
public typealias DevicePointer = UInt64
typealias Handle = OpaquePointer
typealias OutHandle = UnsafeMutablePointer<Handle?>

/// The driver API entry points comet uses, bound once from libcuda.so.1.
///
/// NOTES: the versioned names (`cuMemAlloc_v2`, `cuEventElapsedTime_v2`) are what CUDA 13's
/// header maps the plain names to; binding the plain symbol would get the legacy ABI.
struct DriverAPI {
    let library: DynamicLibrary
    let cuInit: @convention(c) (UInt32) -> CUresult
    let cuDriverGetVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> CUresult
    let cuGetErrorName: @convention(c) (CUresult, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> CUresult
    let cuGetErrorString: @convention(c) (CUresult, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> CUresult
    let cuDeviceGetCount: @convention(c) (UnsafeMutablePointer<Int32>) -> CUresult
    let cuDeviceGet: @convention(c) (UnsafeMutablePointer<CUdevice>, Int32) -> CUresult
    let cuDeviceGetName: @convention(c) (UnsafeMutablePointer<CChar>, Int32, CUdevice) -> CUresult
    let cuDeviceGetAttribute: @convention(c) (UnsafeMutablePointer<Int32>, Int32, CUdevice) -> CUresult
    let cuDeviceTotalMem: @convention(c) (UnsafeMutablePointer<Int>, CUdevice) -> CUresult
    let cuDevicePrimaryCtxRetain: @convention(c) (OutHandle, CUdevice) -> CUresult
    let cuDevicePrimaryCtxRelease: @convention(c) (CUdevice) -> CUresult
    let cuCtxSetCurrent: @convention(c) (Handle?) -> CUresult
    let cuCtxSynchronize: @convention(c) () -> CUresult
    let cuMemGetInfo: @convention(c) (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> CUresult
    let cuMemAlloc: @convention(c) (UnsafeMutablePointer<DevicePointer>, Int) -> CUresult
    let cuMemFree: @convention(c) (DevicePointer) -> CUresult
    let cuMemHostAlloc: @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int, UInt32) -> CUresult
    let cuMemFreeHost: @convention(c) (UnsafeMutableRawPointer) -> CUresult
    let cuMemcpyHtoDAsync: @convention(c) (DevicePointer, UnsafeRawPointer, Int, Handle?) -> CUresult
    let cuMemcpyDtoHAsync: @convention(c) (UnsafeMutableRawPointer, DevicePointer, Int, Handle?) -> CUresult
    let cuMemcpyDtoDAsync: @convention(c) (DevicePointer, DevicePointer, Int, Handle?) -> CUresult
    let cuMemsetD8Async: @convention(c) (DevicePointer, UInt8, Int, Handle?) -> CUresult
    let cuMemsetD32Async: @convention(c) (DevicePointer, UInt32, Int, Handle?) -> CUresult
    let cuStreamCreate: @convention(c) (OutHandle, UInt32) -> CUresult
    let cuStreamDestroy: @convention(c) (Handle?) -> CUresult
    let cuStreamSynchronize: @convention(c) (Handle?) -> CUresult
    let cuStreamBeginCapture: @convention(c) (Handle?, Int32) -> CUresult
    let cuStreamEndCapture: @convention(c) (Handle?, OutHandle) -> CUresult
    let cuEventCreate: @convention(c) (OutHandle, UInt32) -> CUresult
    let cuEventDestroy: @convention(c) (Handle?) -> CUresult
    let cuEventRecord: @convention(c) (Handle?, Handle?) -> CUresult
    let cuEventSynchronize: @convention(c) (Handle?) -> CUresult
    let cuEventQuery: @convention(c) (Handle?) -> CUresult
    let cuEventElapsedTime: @convention(c) (UnsafeMutablePointer<Float>, Handle?, Handle?) -> CUresult
    let cuModuleLoadData: @convention(c) (OutHandle, UnsafeRawPointer) -> CUresult
    let cuModuleUnload: @convention(c) (Handle?) -> CUresult
    let cuModuleGetFunction: @convention(c) (OutHandle, Handle?, UnsafePointer<CChar>) -> CUresult
    let cuFuncSetAttribute: @convention(c) (Handle?, Int32, Int32) -> CUresult
    let cuLaunchKernel: @convention(c) (
        Handle?, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, Handle?,
        UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> CUresult
    /// CUDA 12+: a launch with attributes (programmatic dependent launch); nil on older drivers.
    let cuLaunchKernelEx: (@convention(c) (
        UnsafeRawPointer, Handle?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> CUresult)?
    let cuGraphInstantiateWithFlags: @convention(c) (OutHandle, Handle?, UInt64) -> CUresult
    let cuGraphLaunch: @convention(c) (Handle?, Handle?) -> CUresult
    let cuGraphExecDestroy: @convention(c) (Handle?) -> CUresult
    let cuGraphDestroy: @convention(c) (Handle?) -> CUresult

    init(library l: DynamicLibrary) throws {
        library = l
        cuInit = try l.function("cuInit")
        cuDriverGetVersion = try l.function("cuDriverGetVersion")
        cuGetErrorName = try l.function("cuGetErrorName")
        cuGetErrorString = try l.function("cuGetErrorString")
        cuDeviceGetCount = try l.function("cuDeviceGetCount")
        cuDeviceGet = try l.function("cuDeviceGet")
        cuDeviceGetName = try l.function("cuDeviceGetName")
        cuDeviceGetAttribute = try l.function("cuDeviceGetAttribute")
        cuDeviceTotalMem = try l.function("cuDeviceTotalMem_v2")
        cuDevicePrimaryCtxRetain = try l.function("cuDevicePrimaryCtxRetain")
        cuDevicePrimaryCtxRelease = try l.function("cuDevicePrimaryCtxRelease_v2")
        cuCtxSetCurrent = try l.function("cuCtxSetCurrent")
        cuCtxSynchronize = try l.function("cuCtxSynchronize")
        cuMemGetInfo = try l.function("cuMemGetInfo_v2")
        cuMemAlloc = try l.function("cuMemAlloc_v2")
        cuMemFree = try l.function("cuMemFree_v2")
        cuMemHostAlloc = try l.function("cuMemHostAlloc")
        cuMemFreeHost = try l.function("cuMemFreeHost")
        cuMemcpyHtoDAsync = try l.function("cuMemcpyHtoDAsync_v2")
        cuMemcpyDtoHAsync = try l.function("cuMemcpyDtoHAsync_v2")
        cuMemcpyDtoDAsync = try l.function("cuMemcpyDtoDAsync_v2")
        cuMemsetD8Async = try l.function("cuMemsetD8Async")
        cuMemsetD32Async = try l.function("cuMemsetD32Async")
        cuStreamCreate = try l.function("cuStreamCreate")
        cuStreamDestroy = try l.function("cuStreamDestroy_v2")
        cuStreamSynchronize = try l.function("cuStreamSynchronize")
        cuStreamBeginCapture = try l.function("cuStreamBeginCapture_v2")
        cuStreamEndCapture = try l.function("cuStreamEndCapture")
        cuEventCreate = try l.function("cuEventCreate")
        cuEventDestroy = try l.function("cuEventDestroy_v2")
        cuEventRecord = try l.function("cuEventRecord")
        cuEventSynchronize = try l.function("cuEventSynchronize")
        cuEventQuery = try l.function("cuEventQuery")
        cuEventElapsedTime = try l.function("cuEventElapsedTime_v2", "cuEventElapsedTime")
        cuModuleLoadData = try l.function("cuModuleLoadData")
        cuModuleUnload = try l.function("cuModuleUnload")
        cuModuleGetFunction = try l.function("cuModuleGetFunction")
        cuFuncSetAttribute = try l.function("cuFuncSetAttribute")
        cuLaunchKernel = try l.function("cuLaunchKernel")
        cuLaunchKernelEx = try? l.function("cuLaunchKernelEx")
        cuGraphInstantiateWithFlags = try l.function("cuGraphInstantiateWithFlags")
        cuGraphLaunch = try l.function("cuGraphLaunch")
        cuGraphExecDestroy = try l.function("cuGraphExecDestroy")
        cuGraphDestroy = try l.function("cuGraphDestroy")
    }
}
