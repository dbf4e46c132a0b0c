// swift-tools-version:6.0
import Foundation
import PackageDescription

let package = Package(
    name: "swift-socketserver",
    products: [
        .library(name: "Reactor", targets: ["Reactor"]),
        .library(name: "SocketServer", targets: ["SocketServer"]),
        .library(name: "SocketServerHTTP", targets: ["SocketServerHTTP"]),
        .library(name: "Protocols", targets: ["Protocols"]),
        // No product for the sockserv tool: a package that depends on the libraries then neither resolves nor
        // fetches the tool's dependencies (argument parser, HDR histogram, numerics). `swift build` here still
        // builds it, as SwiftPM makes a product of every executable target of the root package.
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibevent",
            path: "CLibevent",
            pkgConfig: "libevent_pthreads",
            providers: [.apt(["libevent-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            path: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CPosix",
            path: "CPosix"
        ),
        .target(
            name: "Reactor",
            dependencies: ["CLibevent", "CPosix", "COpenSSL"]
        ),
        .target(
            name: "SocketServer",
            dependencies: [
                "Reactor", "Protocols",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "Protocols"
        ),
        .target(
            name: "SocketServerHTTP",
            dependencies: [
                "SocketServer", "Reactor", "Protocols",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "sockserv",
            dependencies: [
                "Reactor", "SocketServer", "Protocols", "SocketServerHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "bench-spread",
            dependencies: ["Reactor"],
            path: "Benchmarks/spread"
        ),
        .executableTarget(
            name: "reactor-echo",
            dependencies: ["Reactor"],
            path: "Examples/ReactorEcho"
        ),
        .executableTarget(
            name: "daemon",
            dependencies: [
                "SocketServer", "Reactor",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/Daemon"
        ),
        .executableTarget(
            name: "hello-http",
            dependencies: ["SocketServerHTTP", "Reactor"],
            path: "Examples/HelloHTTP"
        ),
        .executableTarget(
            name: "embedded",
            dependencies: ["SocketServer"],
            path: "Examples/Embedded"
        ),
        .executableTarget(
            name: "thank-you",
            dependencies: ["SocketServer", "Reactor"],
            path: "Examples/ThankYou"
        ),
        .target(
            name: "TestSupport",
            dependencies: ["Reactor"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "ReactorTests",
            dependencies: ["Reactor", "TestSupport"]
        ),
        .testTarget(
            name: "SocketServerHTTPTests",
            dependencies: [
                "SocketServerHTTP", "SocketServer", "Reactor", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ProtocolsTests",
            dependencies: ["Protocols"]
        ),
        .testTarget(
            name: "SockservTests",
            dependencies: ["sockserv", "Reactor", "TestSupport"]
        ),
        .testTarget(
            name: "SocketServerTests",
            dependencies: [
                "SocketServer", "Reactor", "Protocols", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer targets, one per parser, built only by `make fuzz` (with coverage instrumentation and
// libFuzzer linked without its own `main`; see Fuzz/Driver).
if ProcessInfo.processInfo.environment["SOCKETSERVER_FUZZ"] != nil {
    package.targets += [
        .target(name: "FuzzDriver", path: "Fuzz/Driver"),
        .executableTarget(name: "fuzz-resp", dependencies: ["FuzzDriver", "Protocols"], path: "Fuzz/RESP"),
        .executableTarget(name: "fuzz-http", dependencies: ["FuzzDriver", "Protocols"], path: "Fuzz/HTTP"),
        .executableTarget(name: "fuzz-lines", dependencies: ["FuzzDriver", "Protocols"], path: "Fuzz/Lines"),
        .executableTarget(name: "fuzz-proxy", dependencies: ["FuzzDriver", "Protocols"], path: "Fuzz/Proxy"),
    ]
}
