import Foundation
import Hummingbird
import Logging

// hummingbird-files PORT DIRECTORY: serves DIRECTORY on 127.0.0.1:PORT with Hummingbird's FileMiddleware.
let arguments = CommandLine.arguments
guard arguments.count == 3, let port = Int(arguments[1]) else {
    print("usage: hummingbird-files PORT DIRECTORY")
    exit(2)
}
var logger = Logger(label: "hummingbird-files")
logger.logLevel = .warning
let router = Router()
router.add(middleware: FileMiddleware(arguments[2], searchForIndexHtml: false, logger: logger))
let app = Application(
    router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
try await app.runService()
