/// `x` with one decimal.
func format1(_ x: Double) -> String { formatFixed(x, digits: 1) }
/// `x` with two decimals.
func format2(_ x: Double) -> String { formatFixed(x, digits: 2) }

func formatFixed(_ x: Double, digits: Int) -> String {
    guard x.isFinite else { return "\(x)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let rounded = (abs(x) * scale).rounded()
    let whole = Int(rounded / scale), fraction = Int(rounded) - whole * Int(scale)
    let fractionText = String(fraction)
    let padded = String(repeating: "0", count: max(0, digits - fractionText.count)) + fractionText
    return (x < 0 && rounded > 0 ? "-" : "") + "\(whole)" + (digits > 0 ? "." + padded : "")
}
