extension Array where Element == UInt8 {
    /// Appends `value` in decimal ASCII digits (a `-` first when negative): `String(value).utf8` without the
    /// string. For the numbers protocols write on every message (lengths, counts, statuses).
    public mutating func appendDecimal(_ value: Int) {
        if value < 0 { append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var divisor: UInt = 1
        while divisor <= magnitude / 10 { divisor *= 10 }
        repeat {
            append(UInt8(ascii: "0") + UInt8(magnitude / divisor))
            magnitude %= divisor
            divisor /= 10
        } while divisor > 0
    }
}
