import FuzzDriver
import Protocols

runFuzzer { data, size in fuzzProxy(data, size) }

/// The fuzzed function: `ProxyProtocol.parse` on arbitrary bytes, read as they would arrive (every prefix, as a
/// server asks again after each read). Properties: no crash; once a prefix gives an answer (a header or an error),
/// the whole input gives the same one; a header is no longer than the bytes, nor than the format's bound; every
/// header read back writes (version 2, and version 1 for IP pairs) to bytes that read back as the same header.
func fuzzProxy(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    func parse(_ input: ArraySlice<UInt8>) -> Result<(header: ProxyHeader, length: Int)?, ProxyProtocolError> {
        input.withUnsafeBytes { buffer in Result { () throws(ProxyProtocolError) in try ProxyProtocol.parse(buffer) } }
    }
    let whole = parse(bytes[...])
    var answered = false
    for cut in 0...bytes.count where !answered {
        switch parse(bytes[..<cut]) {
        case .success(nil):
            continue
        case .success(let header?):
            precondition(header.length <= cut, "a header of \(header.length) bytes from \(cut)")
            guard case .success(let again?) = whole, again.header == header.header, again.length == header.length else {
                preconditionFailure("a prefix read \(header), the whole input \(whole)")
            }
            answered = true
        case .failure(let error):
            guard case .failure(let again) = whole, again == error else {
                preconditionFailure("a prefix failed with \(error), the whole input gave \(whole)")
            }
            answered = true
        }
    }
    guard case .success(let parsed?) = whole else { return 0 }
    precondition(parsed.length <= max(ProxyProtocol.longestV1, 16 + ProxyProtocol.longestV2Payload))
    var versions = [2]
    if case .proxied(let source, let destination) = parsed.header {
        if source.family != .unix && source.family == destination.family { versions.append(1) }
        if source.family == .unix && (source.bytes.count > 107 || destination.bytes.count > 107) { return 0 }
    }
    for version in versions {
        let written = ProxyProtocol.encode(parsed.header, version: version)
        guard case .success(let read?) = parse(written[...]), read.header == parsed.header, read.length == written.count
        else { preconditionFailure("version \(version) of \(parsed.header) did not read back") }
    }
    return 0
}
