// Two ways to spread one port's clients over a LoopGroup's loops, measured for issue 25:
//   reuseport: one SO_REUSEPORT listener per loop; the kernel picks the loop (a hash of the addresses);
//   handoff:   one acceptor, on the main thread's loop, hands each accepted socket to the group's loops in turn
//              (execute: a lock, and a wake-up when that loop sleeps).
// Serves echo with a callback delegate, prints "listening on 127.0.0.1:PORT", and on SIGTERM or SIGINT prints how
// many connections each loop served and exits.
// Usage: bench-spread reuseport|handoff LOOPS [PORT]
import Dispatch
import Glibc
import Reactor
import Synchronization

final class Echo: ConnectionDelegate {
    func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
        buffer.withUnsafeReadableBytes { connection.write($0) }
        buffer.clear()
    }
}

/// Connections served by one loop.
final class Served: Sendable {
    private let value = Atomic<Int>(0)
    func add() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// A listener made on its loop's thread, kept until the process exits.
final class Kept: @unchecked Sendable {
    var listener: Listener?
    let made = DispatchSemaphore(value: 0)
}

let arguments = CommandLine.arguments
guard arguments.count >= 3, ["reuseport", "handoff"].contains(arguments[1]), let loops = Int(arguments[2]), loops >= 1
else {
    print("usage: bench-spread reuseport|handoff LOOPS [PORT]")
    exit(64)
}
let port = arguments.count > 3 ? Int(arguments[3]) ?? 0 : 0
let group = try LoopGroup(loops: loops)
let served = (0..<loops).map { _ in Served() }
let main = try EventLoop()
var address = try SocketAddress(ipv4: "127.0.0.1", port: port)
var acceptor: Acceptor?
var kept: [Kept] = []

if arguments[1] == "handoff" {
    let socket = try Socket(binding: address, kind: .stream, reuseAddress: true, reusePort: false)
    try socket.listen(backlog: 1024)
    address = socket.localAddress ?? address
    var next = 0
    acceptor = try Acceptor(
        fileDescriptor: socket.fileDescriptor, on: main,
        accept: { () throws(IOError) -> Bool in
            guard let (client, _) = try socket.accept(nonBlocking: true) else { return false }
            let index = next
            next = (next + 1) % loops
            let loop = group.loops[index]
            let fd = client.detach()
            loop.execute {
                guard let connection = try? Connection(adopting: fd, on: loop) else {
                    _ = close(fd)
                    return
                }
                served[index].add()
                connection.delegate = Echo()
            }
            return true
        }, onPause: { error in print("accept paused: \(error)") })
} else {
    for (index, loop) in group.loops.enumerated() {
        let here = address
        let one = Kept()
        loop.execute {
            one.listener = try? Listener(address: here, options: ListenOptions(reusePort: true), on: loop) {
                served[index].add()
                $0.delegate = Echo()
            }
            one.made.signal()
        }
        one.made.wait()
        guard let listener = one.listener else {
            print("cannot listen on \(here)")
            exit(1)
        }
        address = listener.localAddress  // the others bind the port the first got
        kept.append(one)
    }
}

let watchers = try [SIGTERM, SIGINT].map { signal in try main.onSignal(signal) { _ in main.stop() } }
print("listening on \(address)")
fflush(nil)
try main.run()
print("served per loop: \((0..<loops).map { String(served[$0].count) }.joined(separator: " "))")
fflush(nil)
_ = watchers
exit(0)
