/// A string's UTF-8 bytes and scalars side by side, so that byte ranges (from special-token matching)
/// and scalar ranges (from the pre-tokenizer) convert into each other.
struct UTF8Text {
    let bytes: [UInt8]
    let scalars: [Unicode.Scalar]
    /// `byteOffsets[i]`: where scalar i starts; one extra entry holds the byte count.
    let byteOffsets: [Int]

    init(_ text: String) {
        bytes = Array(text.utf8)
        var scalars: [Unicode.Scalar] = []
        var offsets: [Int] = []
        scalars.reserveCapacity(bytes.count)
        offsets.reserveCapacity(bytes.count + 1)
        var offset = 0
        for scalar in text.unicodeScalars {
            scalars.append(scalar)
            offsets.append(offset)
            offset += UTF8.width(scalar)
        }
        offsets.append(offset)
        self.scalars = scalars
        self.byteOffsets = offsets
    }

    /// The scalars covering `bytes`, whose ends must fall on scalar boundaries.
    func scalarRange(bytes range: Range<Int>) -> Range<Int> {
        scalarIndex(atByte: range.lowerBound)..<scalarIndex(atByte: range.upperBound)
    }

    private func scalarIndex(atByte byte: Int) -> Int {
        // Binary search: byteOffsets is strictly increasing.
        var low = 0, high = byteOffsets.count - 1
        while low < high {
            let mid = (low + high) / 2
            if byteOffsets[mid] < byte { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
