import Reactor

/// The command line's addresses: `--host` (a name or address, IPv6 with or without brackets) and
/// `HOST:PORT` options (`127.0.0.1:9100`, `[::1]:9100`, `localhost:9100`).
enum HostPort {
    /// `--host`'s value without IPv6 brackets; a message when it holds a port.
    static func host(_ text: String, option: String = "--host") -> Result<String, HostPortError> {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                return .failure(.init("\(option) \(text): no closing ]"))
            }
            let rest = text[text.index(after: close)...]
            let inside = String(text[text.index(after: text.startIndex)..<close])
            if rest.isEmpty { return .success(inside) }
            if rest.hasPrefix(":"), Int(rest.dropFirst()) != nil {
                return .failure(
                    .init(
                        "\(option) takes an address without a port: use \(option) \(inside) --port \(rest.dropFirst())")
                )
            }
            return .failure(.init("\(option) \(text): unexpected \(rest) after ]"))
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 2, !parts[0].isEmpty, Int(parts[1]) != nil {
            return .failure(
                .init("\(option) takes an address without a port: use \(option) \(parts[0]) --port \(parts[1])"))
        }
        return .success(text)
    }

    /// `HOST:PORT` or `[V6]:PORT`, port 0-65535.
    static func hostAndPort(_ text: String, option: String) -> Result<(host: String, port: Int), HostPortError> {
        let usage = "\(option) takes HOST:PORT, e.g. 127.0.0.1:9100 or [::1]:9100"
        guard let colon = text.lastIndex(of: ":") else { return .failure(.init("\(usage); got \(text)")) }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            return .failure(.init("\(usage): an IPv6 address goes in brackets"))
        }
        guard !host.isEmpty, let port = Int(portText) else { return .failure(.init("\(usage); got \(text)")) }
        guard (0...65535).contains(port) else {
            return .failure(.init("\(option): the port must be 0-65535, got \(port)"))
        }
        return .success((host, port))
    }
}

struct HostPortError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
