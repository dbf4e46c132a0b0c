import FuzzDriver
import Protocols

runFuzzer { data, size in fuzzRESP(data, size) }

/// The fuzzed function: the RESP parser on arbitrary bytes, whole and split in two at a point the input chooses.
/// Properties: no crash; a parsed command consumes between 1 byte and all of the input; parsing is
/// the same whether the bytes arrive at once or in two reads; input over the limits is an error.
func fuzzRESP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var limits = Limits()
    limits.lineLength = 256
    limits.bulkLength = 512
    limits.requestLength = 2048
    let whole = parseAll(bytes, limits: limits)
    let split = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    var buffered = Array(bytes[..<split])
    var commands: [[[UInt8]]] = []
    var failed: RESP.ProtocolError?
    for chunk in [Array(bytes[split...]), []] {
        let result = parseAll(buffered, limits: limits)
        commands += result.commands
        buffered.removeFirst(result.consumed)
        if let error = result.error {
            failed = error
            break
        }
        buffered += chunk
    }
    // Arriving in two reads may stop at the same error or parse the same commands.
    precondition(failed != nil || whole.error != nil || commands == whole.commands, "split parse differs")
    return 0
}

func parseAll(_ bytes: [UInt8], limits: Limits) -> (commands: [[[UInt8]]], consumed: Int, error: RESP.ProtocolError?) {
    var offset = 0
    var commands: [[[UInt8]]] = []
    while offset < bytes.count {
        do {
            let parsed = try bytes[offset...].withUnsafeBytes { try RESP.parseCommand($0, limits: limits) }
            guard let (arguments, consumed) = parsed else { break }
            precondition(
                consumed > 0 && consumed <= bytes.count - offset, "consumed \(consumed) of \(bytes.count - offset)")
            precondition(arguments.allSatisfy { $0.count <= max(limits.bulkLength, limits.lineLength) })
            precondition(
                consumed <= max(limits.requestLength, limits.lineLength) + 2, "a command over the request limit")
            offset += consumed
            if !arguments.isEmpty { commands.append(arguments) }
        } catch {
            return (commands, offset, error as? RESP.ProtocolError ?? RESP.ProtocolError("\(error)"))
        }
    }
    return (commands, offset, nil)
}
