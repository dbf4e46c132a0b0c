/// The calling thread, for the package's own servers.
package enum CurrentThread {
    /// Names the calling thread for the kernel (`ps -L`, `/proc`, debuggers): at most 15 bytes of `name` are kept.
    package static func setName(_ name: String) {
        Posix.setThreadName(name)
    }
}
