// swift-tools-version:6.0
// The Swift server users pick, serving files: Hummingbird 2's FileMiddleware, for `make bench`'s HTTP table.
import PackageDescription

let package = Package(
    name: "hummingbird-files",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1")
    ],
    targets: [
        .executableTarget(
            name: "hummingbird-files",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird")]
        )
    ],
    swiftLanguageModes: [.v6]
)
