import FuzzDriver
import Protocols

runFuzzer { data, size in fuzzLines(data, size) }

/// The fuzzed function: `EchoSession` (and so `LineFraming.scan`) on arbitrary bytes arriving in reads whose
/// sizes the input chooses, with what a read leaves unconsumed kept for the next one, as a handler does.
/// Properties: no crash; the echoed bytes are exactly the input's complete lines, in order (a prefix of the
/// input ending in a newline); no echoed line is longer than the limit; the session closes only when a line
/// really is longer than the limit.
func fuzzLines(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var limits = Limits()
    limits.lineLength = 64
    var session = EchoSession(limits: limits)
    var pending: [UInt8] = []
    var echoed: [UInt8] = []
    var offset = 0
    var closed = false
    while offset < bytes.count && !closed {
        let count = min(bytes.count - offset, 1 + Int(bytes[offset]) % 97)
        pending += bytes[offset..<(offset + count)]
        offset += count
        var output: [UInt8] = []
        let (consumed, requests, keepOpen) = pending.withUnsafeBytes { session.consume($0, into: &output) }
        precondition(output == Array(pending[..<consumed]), "the session echoes exactly what it consumed")
        precondition(requests == output.filter { $0 == UInt8(ascii: "\n") }.count, "one request per line")
        echoed += output
        pending.removeFirst(consumed)
        closed = !keepOpen
    }
    precondition(bytes.starts(with: echoed), "the lines echoed are not the input's prefix")
    precondition(echoed.isEmpty || echoed.last == UInt8(ascii: "\n"), "only whole lines are echoed")
    for line in echoed.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
        precondition(line.count <= limits.lineLength, "a line of \(line.count) bytes passed the limit")
    }
    if closed {
        // What follows the echoed lines really holds a line (or the start of one) longer than the limit.
        let line = bytes[echoed.count...].prefix { $0 != UInt8(ascii: "\n") }
        precondition(line.count > limits.lineLength, "closed for a line of \(line.count) bytes")
    }
    return 0
}
