import FuzzDriver
import Protocols

runFuzzer { data, size in fuzzHTTP(data, size) }

/// The fuzzed functions: the HTTP request-head parser, the chunked-body decoder and the HTTP/1 session on
/// arbitrary bytes. Properties: no crash; a parsed head consumes at least a byte, at most the input and at
/// most the head limit plus its line ends; a `Content-Length` body is within the request limit; every error
/// is one of the statuses the server answers with; the decoder consumes at most its input and never decodes
/// more than its limit; the session's events and bodies are the same whether it gets the bytes at once or
/// split where the first byte says, every body is within the limit, and nothing follows an error.
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
    let whole = sessionEvents([bytes], limits: limits)
    if size > 1 {
        let split = 1 + Int(bytes[0]) % (size - 1)
        let parts = [
            UnsafeRawBufferPointer(rebasing: bytes[..<split]), UnsafeRawBufferPointer(rebasing: bytes[split...]),
        ]
        precondition(sessionEvents(parts, limits: limits) == whole, "the events depend on where the input was split")
    }
    return 0
}

/// The session's events over `chunks` fed in turn, as text (bodies at their ends).
func sessionEvents(_ chunks: [UnsafeRawBufferPointer], limits: Limits) -> [String] {
    var session = HTTP1Session(limits: limits)
    var pending: [UInt8] = []
    var body: [UInt8] = []
    var events: [String] = []
    for chunk in chunks {
        pending += chunk
        while true {
            let (event, consumed) = pending.withUnsafeBytes { session.next($0, body: &body) }
            precondition(consumed <= pending.count && body.count <= limits.requestLength)
            pending.removeFirst(consumed)
            guard let event else {
                if consumed == 0 { break }
                continue
            }
            switch event {
            case .head(let head): events.append("head \(head.requestLine) \(head.body)")
            case .body: break
            case .end:
                events.append("end \(body)")
                body = []
            case .error(let error):
                precondition([400, 413, 414, 431, 501, 505].contains(error.status), "status \(error.status)")
                events.append("error \(error.status)")
                let after = pending.withUnsafeBytes { session.next($0, body: &body) }
                precondition(after.event == nil && after.consumed == 0, "an event after an error")
                return events
            }
        }
    }
    return events
}
