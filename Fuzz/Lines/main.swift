import FuzzDriver
import Reactor

runFuzzer { data, size in fuzzLines(data, size) }

/// The fuzzed function: `ByteBuffer.readLine` on arbitrary bytes arriving in reads whose sizes the input
/// chooses. Properties: no crash; the lines read, with their newlines, are exactly the input's prefix;
/// no line is longer than the limit; a too-long line is only reported when one really is.
func fuzzLines(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let maxLength = 64
    var buffer = ByteBuffer()
    var rebuilt: [UInt8] = []
    var offset = 0
    var step = 1
    var tooLong = false
    reading: while offset < bytes.count {
        let count = min(bytes.count - offset, 1 + Int(bytes[offset]) % 97)
        buffer.append(bytes[offset..<(offset + count)])
        offset += count
        step += 1
        while true {
            do {
                guard let line = try buffer.readLine(maxLength: maxLength, strippingNewline: false) else { break }
                precondition(line.last == UInt8(ascii: "\n"))
                let content = line.count - (line.count >= 2 && line[line.count - 2] == UInt8(ascii: "\r") ? 2 : 1)
                precondition(content <= maxLength, "a line of \(content) bytes passed the \(maxLength) limit")
                rebuilt += line
            } catch {
                tooLong = true
                break reading
            }
        }
    }
    precondition(bytes.starts(with: rebuilt), "the lines read are not the input's prefix")
    if tooLong {
        // The rest really holds a line (or the start of one) longer than the limit.
        let rest = bytes[rebuilt.count..<offset]
        let line = rest.prefix { $0 != UInt8(ascii: "\n") }
        precondition(line.count > maxLength, "lineTooLong for a line of \(line.count) bytes")
    }
    return 0
}
