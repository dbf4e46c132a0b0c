import ArgumentParser

@main
struct Sockserv: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve echo, a mini Redis and HTTP in any concurrency mode, and compare the modes side by side.",
        subcommands: [Serve.self, Bench.self]
    )
}
