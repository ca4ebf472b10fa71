import CUDA
import Kernels
import Quant

/// One linear layer's weights on the GPU, y[tokens, outputs] = x[tokens, inputs] · Wᵀ.
enum GPULinear: Sendable {
    /// FMPQ: INT4 weights in the W4Ax GEMM's layout; the input is permuted by `permutation` and
    /// quantized (A4/A8 blocks) by the kernel that produces it.
    case w4ax(W4AxWeights, permutation: DeviceBuffer<Int32>)
    /// bf16 [outputs, inputs] row-major, multiplied by cuBLASLt: the baseline.
    case bf16(DeviceBuffer<BFloat16>, outputs: Int, inputs: Int)

    var outputs: Int {
        switch self {
        case let .w4ax(weights, _): weights.outputs
        case let .bf16(_, outputs, _): outputs
        }
    }

    var inputs: Int {
        switch self {
        case let .w4ax(weights, _): weights.layout.inputChannels
        case let .bf16(_, _, inputs): inputs
        }
    }

    var isQuantized: Bool { if case .w4ax = self { true } else { false } }

    /// Device bytes of the weights (and scales).
    var bytes: Int {
        switch self {
        case let .w4ax(weights, permutation): weights.packed.byteCount + weights.scales.byteCount + permutation.byteCount
        case let .bf16(weights, _, _): weights.byteCount
        }
    }
}
