import FuzzDriver
import Protocols

runFuzzer { data, size in fuzzHTTP(data, size) }

/// The application behind the session: answers every head with a small body (the file responder is the
/// tool's; the parser and the session are what this target fuzzes).
struct Echoing: HTTPResponding {
    func respond(to head: HTTP.RequestHead) -> HTTP.Response {
        HTTP.Response(status: 200, body: Array(head.target.utf8))
    }
}

/// The fuzzed function: the HTTP request-head parser on arbitrary bytes, alone and through an `HTTPSession`.
/// Properties: no crash; a parsed head consumes at most the head limit and at most the input; its
/// body length is within the request limit; every error is a whole 400, 413 or 431 response that closes;
/// the session consumes at most the input and answers in whole responses.
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
            precondition(consumed > 0 && consumed <= min(size - offset, limits.headLength), "consumed \(consumed)")
            precondition((0...limits.requestLength).contains(head.bodyLength))
            offset += consumed + min(head.bodyLength, size - offset - consumed)
        } catch {
            let response = error.response
            precondition([400, 413, 431].contains(response.status) && response.close)
            break
        }
    }
    var session = HTTPSession(responder: Echoing(), limits: limits)
    var output: [UInt8] = []
    let (consumed, requests, _) = session.consume(bytes, into: &output)
    precondition(consumed <= size, "the session consumed \(consumed) of \(size)")
    precondition(requests == 0 || output.starts(with: Array("HTTP/1.1 ".utf8)), "answers are whole responses")
    return 0
}
