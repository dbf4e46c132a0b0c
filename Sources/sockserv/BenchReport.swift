import Foundation

/// One mode at one connection count.
struct BenchResult: Codable, Equatable {
    var mode: String
    var connections: Int
    /// How long the load ran, in seconds (shorter than asked only when interrupted).
    var seconds: Double
    /// Replies received.
    var requests: Int
    var requestsPerSecond: Double
    /// Connections the load generator started, and those that received at least one reply.
    var connectionsOpened: Int
    var connectionsAnswered: Int
    /// Latency percentiles in milliseconds, over every request sent: one still unanswered at the end counts
    /// as answered then, for itself and for the round trips its connection missed (see `LoadGenerator.finish`).
    var p50: Double
    var p99: Double
    var p999: Double
    /// The longest wait of any connection for its first reply, from the start of its connect, in milliseconds;
    /// a connection never answered counts as waiting until the end of the run.
    var slowestFirstReply: Double
    /// Server CPU (user + system, the process and its children, live and reaped) during the run, in seconds.
    var cpuSeconds: Double
    /// `cpuSeconds` per reply, in microseconds.
    var cpuMicrosecondsPerRequest: Double?
    /// Peak memory of the server and its children: summed proportional set sizes, in bytes.
    var peakMemory: Int
    var threads: Int
    var processes: Int
    /// Connections that failed: refused, timed out, reset or closed by the server.
    var errors: Int
    /// Whether a signal cut the run short.
    var interrupted: Bool
    /// From the server's exit summary, for checking: the requests it answered (at least `requests`; more by
    /// the replies in flight when the load stopped), and its CPU over its whole life (at least `cpuSeconds`).
    var serverRequests: Int?
    var serverLifetimeCPUSeconds: Double?
}

/// The table, the JSON and the SVG chart of a bench run.
struct BenchReport {
    struct Settings: Codable {
        var duration: Double
        var payload: Int
        var pipeline: Int
        var connectPerRequest: Bool
        var tls: Bool
    }

    let results: [BenchResult]
    /// One line saying what ran.
    let workload: String
    let protocolName: String
    let settings: Settings

    /// What the columns mean, printed above the table.
    static let legend = """
        Each run starts the server in one mode as a child process and loads it from one thread for the run's length: \
        every connection sends a request, waits for the reply, and sends again. req/s counts replies. answered is how \
        many of the connections the load opened got at least one reply; a server that serves one connection at a \
        time starves the rest. Latencies count every request sent, answered or not: a request still waiting when the \
        run ends counts as answered then, and stands for the round trips its connection missed (coordinated-omission \
        correction), so starved connections show in p99. 1st reply is the longest any connection waited for its first \
        reply (the whole run if it never got one). CPU is the server's own, user + system, its child processes \
        included, divided by replies. Memory is the peak proportional set size of the server and its children. \
        errors counts connections refused, reset or closed by the server.
        """

    static let header = [
        "mode", "conns", "req/s", "answered", "p50 ms", "p99 ms", "p99.9 ms", "1st reply ms", "CPU us/req", "peak PSS",
        "threads", "procs", "errors",
    ]

    /// One row's cells, in `header`'s order.
    static func cells(_ r: BenchResult) -> [String] {
        [
            r.mode + (r.interrupted ? " (cut)" : ""), grouped(r.connections), grouped(r.requestsPerSecond),
            "\(grouped(r.connectionsAnswered))/\(grouped(r.connectionsOpened))",
            milliseconds(r.p50), milliseconds(r.p99), milliseconds(r.p999), milliseconds(r.slowestFirstReply),
            r.cpuMicrosecondsPerRequest.map { decimal($0, maximumDecimals: 1) } ?? "-",
            decimal(Double(r.peakMemory) / 1_048_576, maximumDecimals: 1) + " MiB",
            grouped(r.threads), grouped(r.processes), grouped(r.errors),
        ]
    }

    func table() -> String {
        let rows = [Self.header] + results.map(Self.cells)
        let widths = Self.header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return
            ([workload]
            + rows.map { row in
                row.indices.map { column in
                    column == 0
                        ? row[column].padding(toLength: widths[column], withPad: " ", startingAt: 0)
                        : String(repeating: " ", count: widths[column] - row[column].count) + row[column]
                }.joined(separator: "  ")
            }).joined(separator: "\n")
    }

    /// A run in one line, for progress.
    static func summary(_ r: BenchResult) -> String {
        "\(r.mode), \(connections(r.connections))\(r.interrupted ? " (cut short)" : ""): \(grouped(r.requestsPerSecond)) req/s, "
            + "\(grouped(r.connectionsAnswered))/\(grouped(r.connectionsOpened)) answered, p99 \(milliseconds(r.p99)) ms, "
            + "CPU \(r.cpuMicrosecondsPerRequest.map { decimal($0, maximumDecimals: 1) } ?? "-") us/req, \(grouped(r.errors)) errors"
    }

    func json() throws -> Data {
        struct Document: Codable {
            var workload: String
            var protocolName: String
            var settings: Settings
            var results: [BenchResult]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(
            Document(workload: workload, protocolName: protocolName, settings: settings, results: results))
    }

    /// `text` broken into lines of at most `width` characters, at spaces.
    static func wrapped(_ text: String, width: Int) -> String {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        return (lines + [line]).joined(separator: "\n")
    }

    // MARK: Numbers

    /// "1 connection", "1,000 connections".
    static func connections(_ count: Int) -> String { "\(grouped(count)) connection\(count == 1 ? "" : "s")" }

    /// `value` rounded to an integer, with thousands separators: 1234567.8 -> "1,234,568".
    static func grouped(_ value: Double) -> String { decimal(value, maximumDecimals: 0) }
    static func grouped(_ value: Int) -> String { grouped(Double(value)) }

    /// `value` with at most `maximumDecimals` decimals (trailing zeros kept) and thousands separators.
    static func decimal(_ value: Double, maximumDecimals: Int) -> String {
        let text = String(format: "%.\(maximumDecimals)f", abs(value))
        let parts = text.split(separator: ".", maxSplits: 1)
        var integer = String(parts[0])
        var index = integer.count - 3
        while index > 0 {
            integer.insert(",", at: integer.index(integer.startIndex, offsetBy: index))
            index -= 3
        }
        let sign = value < 0 && text.contains(where: { $0 != "0" && $0 != "." }) ? "-" : ""
        return sign + integer + (parts.count > 1 ? "." + parts[1] : "")
    }

    /// A latency in milliseconds with three significant digits or more: 0.0345, 1.23, 42.5, 1,234.
    static func milliseconds(_ value: Double) -> String {
        switch value {
        case ..<1: return decimal(value, maximumDecimals: 3)
        case ..<10: return decimal(value, maximumDecimals: 2)
        case ..<100: return decimal(value, maximumDecimals: 1)
        default: return decimal(value, maximumDecimals: 0)
        }
    }

    /// Round ticks from 0 covering `maximum`: four to eight steps of 1, 2, 2.5 or 5 x 10^k.
    static func linearTicks(upTo maximum: Double) -> [Double] {
        guard maximum > 0, maximum.isFinite else { return [0, 1] }
        let rough = maximum / 4
        let magnitude = pow(10, floor(log10(rough)))
        let step = [1, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= rough * (1 - 1e-9) } ?? 10 * magnitude
        let steps = Int((maximum / step - 1e-9).rounded(.up))
        return (0...max(steps, 1)).map { Double($0) * step }
    }

    /// Powers of ten covering `low...high` (both positive).
    static func logarithmicTicks(_ low: Double, _ high: Double) -> [Double] {
        let first = Int(floor(log10(max(low, 1e-9))))
        let last = Int(ceil(log10(max(high, low, 1e-9))))
        return (first...max(last, first + 1)).map { pow(10, Double($0)) }
    }

    /// A tick's label: as few decimals as its step needs, thousands separators.
    static func tickLabel(_ value: Double, step: Double) -> String {
        var decimals = 0
        while decimals < 6
            && abs((step * pow(10, Double(decimals))).rounded() - step * pow(10, Double(decimals))) > 1e-6
        {
            decimals += 1
        }
        return decimal(value, maximumDecimals: decimals)
    }

    // MARK: Chart

    /// Four panels against connections (log scale), a line per mode: requests/s, p99 latency (log scale),
    /// the share of connections answered, and peak memory.
    func svg() -> String {
        let colors = [
            "sequential": "#8c8c8c", "threading": "#1f77b4", "forking": "#d62728", "reactor": "#2ca02c",
            "reactor-pool": "#9467bd",
        ]
        let modes = results.map(\.mode).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let counts = Set(results.map(\.connections)).sorted()
        let panelWidth = 400.0
        let panelHeight = 220.0
        let left = 80.0
        let top = 90.0
        let gapX = 110.0
        let gapY = 100.0
        let width = left + 2 * panelWidth + gapX + 30
        let height = top + 2 * panelHeight + gapY + 90
        func x(_ connections: Int, _ originX: Double) -> Double {
            guard counts.count > 1 else { return originX + panelWidth / 2 }
            let low = log10(Double(counts.first!))
            let high = log10(Double(counts.last!))
            return originX + (log10(Double(connections)) - low) / max(high - low, 1e-9) * panelWidth
        }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="26" font-size="15">sockserv bench: \(escaped(workload))</text>
            <text x="\(left)" y="46" fill="#555">server CPU and memory include its child processes; latency counts requests left unanswered at the end</text>\n
            """
        enum Scale { case linear, logarithmic }
        let peakMemory = { (r: BenchResult) in Double(r.peakMemory) / 1_048_576 }
        let answeredShare = { (r: BenchResult) in
            100 * Double(r.connectionsAnswered) / Double(max(r.connectionsOpened, 1))
        }
        let panels: [(String, (BenchResult) -> Double, Scale)] = [
            ("requests/s", { $0.requestsPerSecond }, .linear),
            ("p99 latency, ms (log scale)", { $0.p99 }, .logarithmic),
            ("connections answered, %", answeredShare, .linear),
            ("peak server memory, PSS (MiB)", peakMemory, .linear),
        ]
        for (panel, (title, value, scale)) in panels.enumerated() {
            let originX = left + Double(panel % 2) * (panelWidth + gapX)
            let originY = top + Double(panel / 2) * (panelHeight + gapY)
            let values = results.map(value)
            let ticks: [Double]
            switch scale {
            case .linear:
                ticks = panel == 2 ? [0, 25, 50, 75, 100] : Self.linearTicks(upTo: values.max() ?? 1)
            case .logarithmic:
                ticks = Self.logarithmicTicks(values.filter { $0 > 0 }.min() ?? 0.01, values.max() ?? 1)
            }
            let low = ticks.first!
            let high = ticks.last!
            func y(_ v: Double) -> Double {
                let fraction: Double
                switch scale {
                case .linear: fraction = (v - low) / max(high - low, 1e-9)
                case .logarithmic: fraction = (log10(max(v, low)) - log10(low)) / max(log10(high) - log10(low), 1e-9)
                }
                return originY + panelHeight - fraction * panelHeight
            }
            svg += "<text x=\"\(originX)\" y=\"\(originY - 10)\" font-weight=\"bold\">\(title)</text>\n"
            svg +=
                "<rect x=\"\(originX)\" y=\"\(originY)\" width=\"\(panelWidth)\" height=\"\(panelHeight)\" fill=\"none\" stroke=\"#444\"/>\n"
            let step = ticks.count > 1 ? ticks[1] - ticks[0] : 1
            for tick in ticks {
                svg +=
                    "<line x1=\"\(originX)\" x2=\"\(originX + panelWidth)\" y1=\"\(y(tick))\" y2=\"\(y(tick))\" stroke=\"#ddd\"/>"
                let label = scale == .logarithmic ? Self.tickLabel(tick, step: tick) : Self.tickLabel(tick, step: step)
                svg += "<text x=\"\(originX - 6)\" y=\"\(y(tick) + 4)\" text-anchor=\"end\">\(label)</text>\n"
            }
            for count in counts {
                svg +=
                    "<text x=\"\(x(count, originX))\" y=\"\(originY + panelHeight + 16)\" text-anchor=\"middle\">\(Self.grouped(count))</text>\n"
            }
            svg +=
                "<text x=\"\(originX + panelWidth / 2)\" y=\"\(originY + panelHeight + 34)\" text-anchor=\"middle\">connections (log scale)</text>\n"
            for mode in modes {
                let points = results.filter { $0.mode == mode }.sorted { $0.connections < $1.connections }
                let color = colors[mode] ?? "#000"
                let path = points.map { "\(x($0.connections, originX)),\(y(value($0)))" }.joined(separator: " ")
                svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
                for point in points {
                    svg +=
                        "<circle cx=\"\(x(point.connections, originX))\" cy=\"\(y(value(point)))\" r=\"3\" fill=\"\(color)\"/>\n"
                }
            }
        }
        for (index, mode) in modes.enumerated() {
            let lx = left + Double(index) * 120
            svg +=
                "<rect x=\"\(lx)\" y=\"\(height - 28)\" width=\"14\" height=\"4\" fill=\"\(colors[mode] ?? "#000")\"/>"
            svg += "<text x=\"\(lx + 20)\" y=\"\(height - 22)\">\(mode)</text>\n"
        }
        return svg + "</svg>\n"
    }

    private func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}
