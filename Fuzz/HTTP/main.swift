import FuzzDriver
import Protocols

runFuzzer { data, size in fuzzHTTP(data, size) }

/// The fuzzed functions: the HTTP request-head parser and the chunked-body decoder on arbitrary bytes.
/// Properties: no crash; a parsed head consumes at least a byte, at most the input and at most the head
/// limit plus its line ends; a `Content-Length` body is within the request limit; every error is one of the
/// statuses the server answers with; the decoder consumes at most its input and never decodes more than
/// its limit.
func fuzzHTTP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    var limits = Limits()
    limits.headLength = 1024
    limits.requestLength = 4096
    var offset = 0
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    while offset < size {
        do {
            guard
                let (head, consumed) = try HTTP.parseRequestHead(
                    UnsafeRawBufferPointer(rebasing: bytes[offset...]), limits: limits)
            else { break }
            precondition(consumed > 0 && consumed <= size - offset, "consumed \(consumed)")
            var length = 0
            if case .length(let value) = head.body { length = value }
            precondition((0...limits.requestLength).contains(length))
            offset += consumed + min(length, size - offset - consumed)
        } catch {
            precondition([400, 413, 414, 431, 501, 505].contains(error.status), "status \(error.status)")
            break
        }
    }
    var decoder = HTTP.ChunkedDecoder(limit: 4096, maxLineLength: 256)
    var body: [UInt8] = []
    do {
        let consumed = try decoder.decode(bytes, into: &body)
        precondition(consumed <= size && body.count <= 4096 && decoder.decodedCount <= 4096)
    } catch {
        precondition([400, 413].contains(error.status))
    }
    return 0
}
