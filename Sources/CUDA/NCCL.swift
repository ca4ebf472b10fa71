#if canImport(Glibc)
import Glibc
#endif

/// NCCL (libnccl.so.2), loaded with dlopen: the all-reduce of tensor parallelism.
///
/// One process drives every GPU of the group (`NCCLGroup`: one communicator per device, made
/// together by `ncclCommInitAll`), each rank's collectives issued from its own thread on its own
/// stream, as NCCL expects of a single-process group.
public final class NCCL: @unchecked Sendable {
    typealias Result = Int32
    let library: DynamicLibrary
    /// e.g. 22703 for 2.27.3.
    public let version: Int
    let ncclGetErrorString: @convention(c) (Result) -> UnsafePointer<CChar>?
    let ncclCommInitAll: @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32, UnsafePointer<Int32>) -> Result
    let ncclCommDestroy: @convention(c) (OpaquePointer?) -> Result
    let ncclCommGetAsyncError: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Result>) -> Result
    let ncclAllReduce: @convention(c) (DevicePointer, DevicePointer, Int, Int32, Int32, OpaquePointer?, OpaquePointer?) -> Result

    /// Loads NCCL from the places `search` names (a CUDA toolkit, the nvidia-nccl pip wheel
    /// that PyTorch installs, the loader path).
    ///
    /// Sets NCCL_NVLS_ENABLE=0 for this process first: NVLink SHARP (multicast) stays off on
    /// the lent machines (their fabric manager setup does not support it reliably).
    public static func load(search: LibrarySearch) throws -> NCCL {
        setenv("NCCL_NVLS_ENABLE", "0", 1)
        let library = try search.open(sonames: ["libnccl.so.2"], wheelFolders: ["nccl/lib", "cu13/lib", "cu12/lib"], name: "NCCL (libnccl.so.2)")
        return try NCCL(library: library)
    }

    private init(library l: DynamicLibrary) throws {
        library = l
        ncclGetErrorString = try l.function("ncclGetErrorString")
        ncclCommInitAll = try l.function("ncclCommInitAll")
        ncclCommDestroy = try l.function("ncclCommDestroy")
        ncclCommGetAsyncError = try l.function("ncclCommGetAsyncError")
        ncclAllReduce = try l.function("ncclAllReduce")
        let getVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> Result = try l.function("ncclGetVersion")
        var v: Int32 = 0
        let status = getVersion(&v)
        version = Int(v)
        try check(status, "ncclGetVersion")
    }

    /// "2.27.3" for 22703 (NCCL >= 2.9 encodes major*10000 + minor*100 + patch).
    public var versionString: String { "\(version / 10000).\(version / 100 % 100).\(version % 100)" }

    public var libraryPath: String { library.path }

    func check(_ result: Result, _ call: String) throws {
        guard result != 0 else { return }
        let message = ncclGetErrorString(result).map { String(cString: $0) } ?? "unknown error"
        throw CUDAError.invalidArgument("\(call) failed: NCCL error \(result) (\(message))")
    }
}

/// One NCCL communicator per GPU of a tensor-parallel group, in one process. Rank r is the
/// r-th context given; only rank r's thread may issue rank r's collectives.
public final class NCCLGroup: @unchecked Sendable {
    public let nccl: NCCL
    public let contexts: [CUDAContext]
    private let communicators: [OpaquePointer?]

    public var ranks: Int { contexts.count }

    /// Makes the communicators of `contexts` (distinct devices, rank order) together.
    public init(nccl: NCCL, contexts: [CUDAContext]) throws {
        let ordinals = contexts.map { Int32($0.device.ordinal) }
        guard !contexts.isEmpty, Set(ordinals).count == ordinals.count else {
            throw CUDAError.invalidArgument("an NCCL group needs distinct GPUs, got ordinals \(ordinals)")
        }
        self.nccl = nccl
        self.contexts = contexts
        var comms = [OpaquePointer?](repeating: nil, count: contexts.count)
        try contexts[0].bind()
        try nccl.check(nccl.ncclCommInitAll(&comms, Int32(contexts.count), ordinals), "ncclCommInitAll")
        communicators = comms
    }

    deinit { for comm in communicators { _ = nccl.ncclCommDestroy(comm) } }

    /// The element types reductions take.
    public enum DataType: Int32, Sendable {
        case float32 = 7
        case bfloat16 = 9
    }

    /// Queues an in-place sum of `count` elements at `buffer` over all ranks, on `stream` (a
    /// stream of rank `rank`'s context). Every rank must queue the same reductions in the same order.
    public func allReduceSum(_ buffer: DevicePointer, count: Int, type: DataType, rank: Int, on stream: CUDAStream) throws {
        guard (0..<ranks).contains(rank), stream.context === contexts[rank] else {
            throw CUDAError.invalidArgument("all-reduce for rank \(rank) on a stream of GPU \(stream.context.device.ordinal)")
        }
        try contexts[rank].bind()
        try nccl.check(
            nccl.ncclAllReduce(buffer, buffer, count, type.rawValue, 0 /* ncclSum */, communicators[rank], stream.handle),
            "ncclAllReduce")
    }

    /// Throws the error of a collective that failed asynchronously on rank `rank` (a peer died,
    /// a network failure), if any.
    public func checkAsyncError(rank: Int) throws {
        var result: NCCL.Result = 0
        try nccl.check(nccl.ncclCommGetAsyncError(communicators[rank], &result), "ncclCommGetAsyncError")
        try nccl.check(result, "an NCCL collective")
    }
}
