import Protocols
import Testing

/// The digits protocols write are `String(value)`'s, at the ends of `Int` too; ASCII checks agree with a byte loop.
@Suite struct DecimalTests {
    @Test(arguments: [0, 1, -1, 9, 10, -10, 99, 100, 1023, 65_536, 9_876_543_210, Int.max, Int.min, Int.min + 1])
    func digitsAreStringsDigits(value: Int) {
        var bytes: [UInt8] = [42]
        bytes.appendDecimal(value)
        #expect(bytes == [42] + Array(String(value).utf8))
        #expect(withDecimalDigits(value) { Array($0) } == Array(String(value).utf8))
    }

    @Test func isASCIIAtEveryLengthAndPosition() {
        for count in 0...20 {
            let ascii = [UInt8](repeating: 0x7F, count: count)
            #expect(ascii.withUnsafeBytes { HTTP.isASCII($0) }, "\(count)")
            for position in 0..<count {
                var bytes = ascii
                bytes[position] = 0x80
                #expect(!bytes.withUnsafeBytes { HTTP.isASCII($0) }, "\(count) \(position)")
            }
        }
    }
}
