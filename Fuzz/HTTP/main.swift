import FuzzDriver
import Protocols

runFuzzer { data, size in fuzzHTTP(data, size) }

/// The fuzzed function: the HTTP request-head parser and the responder (no file root) on arbitrary bytes.
/// Properties: no crash; a parsed head consumes at most the head limit and at most the input; its
/// body length is within the request limit; every answer is a whole response with a known status.
func fuzzHTTP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    var limits = Limits()
    limits.headLength = 1024
    limits.requestLength = 4096
    let responder = HTTPResponder(root: nil)
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
            let response = responder.respond(to: head)
            precondition((200...599).contains(response.status))
            let encoded = response.encoded()
            precondition(encoded.starts(with: Array("HTTP/1.1 ".utf8)))
            offset += consumed + min(head.bodyLength, size - offset - consumed)
        } catch {
            let response = error.response
            precondition([400, 413, 431].contains(response.status) && response.close)
            break
        }
    }
    return 0
}
