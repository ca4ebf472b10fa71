/// How a channel's calibration statistics become one "outlier score"; FMPQ puts the channels
/// of highest score into the INT8 blocks.
///
/// Why abs-max is the default: a block's INT4 step is its per-token abs-max / 7, so one
/// channel that ever spikes stretches the step of the 127 channels beside it on that token;
/// abs-max ranks exactly that harm. It is also what DESIGN.md §2's numpy study sorted by
/// (FMPQ 20% INT8: perplexity 44.5 against 176.8 unpermuted). Its weakness is that one rare
/// token can promote a channel; with the attention sink excluded (`CalibrationStatistics`)
/// that weakness is small, and `rms` is here to measure it: rms ranks channels by the
/// typical token instead of the worst one.
public enum OutlierCriterion: String, Sendable, Equatable, Codable, CaseIterable {
    /// The largest |x| over calibration tokens.
    case absMax
    /// The root mean square over calibration tokens (mean-square gives the same order).
    case rms

    /// [channels]: the score of every channel.
    public func scores(_ statistics: CalibrationStatistics) -> [Float] {
        switch self {
        case .absMax: return statistics.absMax
        case .rms: return statistics.rms
        }
    }
}
