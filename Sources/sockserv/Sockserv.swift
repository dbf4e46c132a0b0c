import ArgumentParser

@main
struct Sockserv: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve echo, a mini Redis and HTTP in any concurrency mode, and compare the modes side by side.",
        version: sockservVersion,
        subcommands: [Serve.self, Bench.self]
    )
}

/// `sockserv --version`: the package's version, raised with each release.
let sockservVersion = "0.15.0"
