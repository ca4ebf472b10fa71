import ArgumentParser
import Sampling

/// The sampling flags of `generate` and `chat`.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Temperature; 0 is greedy (always the most likely token).")
    var temperature: Float = 0.2

    @Option(help: "Keep only the k most likely tokens (0: off).")
    var topK = 0

    @Option(help: "Nucleus sampling: keep the most likely tokens up to this probability mass (1: off).")
    var topP: Float = 0.9

    @Option(help: "Drop tokens less likely than this fraction of the most likely one (0: off).")
    var minP: Float = 0

    @Option(help: "Repetition penalty on recent tokens (1: off).")
    var repeatPenalty: Float = 1.1

    @Option(help: "Frequency penalty per occurrence of a recent token (0: off).")
    var frequencyPenalty: Float = 0

    @Option(help: "Presence penalty on every recent token (0: off).")
    var presencePenalty: Float = 0

    @Option(help: "How many recent tokens the penalties see (0: all).")
    var penaltyWindow = 64

    @Option(help: "Random seed: the same seed and prompt give the same text (default: random).")
    var seed: UInt64?

    var parameters: SamplingParameters {
        SamplingParameters(
            temperature: temperature, topK: topK, topP: topP, minP: minP, repetitionPenalty: repeatPenalty,
            frequencyPenalty: frequencyPenalty, presencePenalty: presencePenalty, penaltyWindow: penaltyWindow,
            seed: seed ?? UInt64.random(in: .min ... .max))
    }

    func validate() throws {
        do {
            try parameters.validate()
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
