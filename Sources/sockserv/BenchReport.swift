import Foundation

/// One mode at one connection count.
struct BenchResult: Codable {
    var mode: String
    var connections: Int
    var requestsPerSecond: Double
    /// Latency percentiles in milliseconds.
    var p50: Double
    var p99: Double
    var p999: Double
    /// Server CPU (process and children) per request, in microseconds.
    var cpuMicrosecondsPerRequest: Double?
    /// Peak memory of the server and its children: summed proportional set sizes, in bytes.
    var peakMemory: Int
    var threads: Int
    var processes: Int
    var errors: Int
    var note: String
}

/// The table, the JSON and the SVG chart of a bench run.
struct BenchReport {
    let results: [BenchResult]
    let protocolName: String
    let duration: Double
    let payload: Int
    let pipeline: Int
    let connectPerRequest: Bool

    func table() -> String {
        let header = ["mode", "conns", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU us/req", "peak PSS", "threads", "procs", "errors", "note"]
        var rows = [header]
        for r in results {
            rows.append([
                r.mode, "\(r.connections)", String(format: "%.0f", r.requestsPerSecond),
                String(format: "%.3f", r.p50), String(format: "%.3f", r.p99), String(format: "%.3f", r.p999),
                r.cpuMicrosecondsPerRequest.map { String(format: "%.1f", $0) } ?? "-",
                String(format: "%.1f MiB", Double(r.peakMemory) / 1_048_576), "\(r.threads)", "\(r.processes)", "\(r.errors)", r.note,
            ])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        let size = protocolName == "echo" ? "\(payload)-byte requests" : "one request per round trip"
        let workload = "\(protocolName), \(size), pipeline \(pipeline)\(connectPerRequest ? ", a connection per request" : ""), \(duration) s per run"
        return ([workload] + rows.map { row in
            row.indices.map { column in
                column == 0 || column == row.count - 1
                    ? row[column].padding(toLength: widths[column], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[column] - row[column].count) + row[column]
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }).joined(separator: "\n")
    }

    func json() throws -> Data {
        struct Document: Codable {
            var protocolName: String
            var duration: Double
            var payload: Int
            var pipeline: Int
            var connectPerRequest: Bool
            var results: [BenchResult]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(Document(
            protocolName: protocolName, duration: duration, payload: payload, pipeline: pipeline,
            connectPerRequest: connectPerRequest, results: results))
    }

    /// Two panels, requests/s and peak RSS against connections (log scale), a line per mode.
    func svg() -> String {
        let colors = ["sequential": "#8c8c8c", "threading": "#1f77b4", "forking": "#d62728", "reactor": "#2ca02c"]
        let modes = results.map(\.mode).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let counts = Set(results.map(\.connections)).sorted()
        let panelWidth = 420.0, panelHeight = 260.0, left = 70.0, top = 50.0, gap = 90.0
        let width = left + 2 * panelWidth + gap + 30, height = top + panelHeight + 90
        func x(_ connections: Int, _ panel: Int) -> Double {
            let origin = left + Double(panel) * (panelWidth + gap)
            guard counts.count > 1 else { return origin + panelWidth / 2 }
            let low = log10(Double(counts.first!)), high = log10(Double(counts.last!))
            return origin + (log10(Double(connections)) - low) / max(high - low, 1e-9) * panelWidth
        }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="24" font-size="15">sockserv bench: \(protocolName), pipeline \(pipeline)\(connectPerRequest ? ", connection per request" : "")</text>\n
            """
        let panels: [(String, (BenchResult) -> Double, (Double) -> String)] = [
            ("requests/s", { $0.requestsPerSecond }, { String(format: "%.0f", $0) }),
            ("peak server memory, PSS (MiB)", { Double($0.peakMemory) / 1_048_576 }, { String(format: "%.0f", $0) }),
        ]
        for (panel, (title, value, label)) in panels.enumerated() {
            let origin = left + Double(panel) * (panelWidth + gap)
            let maximum = max(results.map(value).max() ?? 1, 1) * 1.1
            func y(_ v: Double) -> Double { top + panelHeight - v / maximum * panelHeight }
            svg += "<text x=\"\(origin)\" y=\"\(top - 10)\" font-weight=\"bold\">\(title)</text>\n"
            svg += "<rect x=\"\(origin)\" y=\"\(top)\" width=\"\(panelWidth)\" height=\"\(panelHeight)\" fill=\"none\" stroke=\"#444\"/>\n"
            for step in 0...4 {
                let v = maximum * Double(step) / 4
                svg += "<line x1=\"\(origin)\" x2=\"\(origin + panelWidth)\" y1=\"\(y(v))\" y2=\"\(y(v))\" stroke=\"#ddd\"/>"
                svg += "<text x=\"\(origin - 6)\" y=\"\(y(v) + 4)\" text-anchor=\"end\">\(label(v))</text>\n"
            }
            for count in counts {
                svg += "<text x=\"\(x(count, panel))\" y=\"\(top + panelHeight + 16)\" text-anchor=\"middle\">\(count)</text>\n"
            }
            svg += "<text x=\"\(origin + panelWidth / 2)\" y=\"\(top + panelHeight + 34)\" text-anchor=\"middle\">connections (log scale)</text>\n"
            for mode in modes {
                let points = results.filter { $0.mode == mode }.sorted { $0.connections < $1.connections }
                let color = colors[mode] ?? "#000"
                let path = points.map { "\(x($0.connections, panel)),\(y(value($0)))" }.joined(separator: " ")
                svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
                for point in points {
                    svg += "<circle cx=\"\(x(point.connections, panel))\" cy=\"\(y(value(point)))\" r=\"3\" fill=\"\(color)\"/>\n"
                }
            }
        }
        for (index, mode) in modes.enumerated() {
            let lx = left + Double(index) * 120
            svg += "<rect x=\"\(lx)\" y=\"\(height - 28)\" width=\"14\" height=\"4\" fill=\"\(colors[mode] ?? "#000")\"/>"
            svg += "<text x=\"\(lx + 20)\" y=\"\(height - 22)\">\(mode)</text>\n"
        }
        return svg + "</svg>\n"
    }
}
