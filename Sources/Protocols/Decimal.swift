/// Calls `body` with `value` in decimal ASCII digits (a `-` first when negative), written on the stack:
/// `String(value).utf8` without the string. The one way protocols write the numbers they send on every
/// message (lengths, counts, statuses).
@inlinable
public func withDecimalDigits<R>(_ value: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
    try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in  // Int.min has 19 and a sign
        var magnitude = value.magnitude
        var start = digits.count
        repeat {
            start -= 1
            digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
            magnitude /= 10
        } while magnitude > 0
        if value < 0 {
            start -= 1
            digits[start] = UInt8(ascii: "-")
        }
        return try body(UnsafeBufferPointer(rebasing: digits[start...]))
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` in decimal ASCII digits (``withDecimalDigits(_:_:)``).
    @inlinable
    public mutating func appendDecimal(_ value: Int) {
        withDecimalDigits(value) { append(contentsOf: $0) }
    }
}
