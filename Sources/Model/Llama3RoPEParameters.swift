import Glibc

/// Llama 3.1's RoPE frequency scaling (`rope_scaling` with `rope_type: "llama3"` in config.json):
/// long wavelengths are slowed by `factor`, short ones kept, and the band between blended smoothly.
///
/// The divisors are those of Hugging Face's `_compute_llama3_parameters` (and of the `rope_freqs.weight`
/// tensor llama.cpp's converter writes from it): the rotary embedding divides each pair's frequency by one.
public struct Llama3RoPEParameters: Sendable, Equatable {
    public var factor: Double
    public var lowFrequencyFactor: Double
    public var highFrequencyFactor: Double
    /// The context length the model was pre-trained with (`original_max_position_embeddings`).
    public var originalContextLength: Int

    public init(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContextLength: Int) {
        self.factor = factor
        self.lowFrequencyFactor = lowFrequencyFactor
        self.highFrequencyFactor = highFrequencyFactor
        self.originalContextLength = originalContextLength
    }

    /// Checks what the formula divides by.
    func validate() throws {
        guard factor > 0, lowFrequencyFactor > 0, highFrequencyFactor > lowFrequencyFactor, originalContextLength > 0 else {
            throw ModelError.invalidConfig(
                "llama3 rope_scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0 "
                + "(factor \(factor), low \(lowFrequencyFactor), high \(highFrequencyFactor), original \(originalContextLength))")
        }
    }

    /// The divisor of each rotated channel pair's frequency base^(-2i/dimensions), i < dimensions / 2.
    ///
    /// With wavelength w = 2π / frequency and L the original context length: w < L / high → 1 (kept);
    /// w > L / low → `factor`; in between the frequency is (1 - s) f / factor + s f with
    /// s = (L / w - low) / (high - low), so the divisor is 1 / ((1 - s) / factor + s).
    public func frequencyFactors(ropeBase: Double, dimensions: Int) -> [Double] {
        let context = Double(originalContextLength)
        let lowFrequencyWavelength = context / lowFrequencyFactor
        let highFrequencyWavelength = context / highFrequencyFactor
        return (0..<(dimensions / 2)).map { i in
            let frequency = pow(ropeBase, -2 * Double(i) / Double(dimensions))
            let wavelength = 2 * Double.pi / frequency
            if wavelength < highFrequencyWavelength { return 1 }
            if wavelength > lowFrequencyWavelength { return factor }
            let smooth = (context / wavelength - lowFrequencyFactor) / (highFrequencyFactor - lowFrequencyFactor)
            return 1 / ((1 - smooth) / factor + smooth)
        }
    }
}
