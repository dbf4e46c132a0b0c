import Glibc

/// Writes one report to standard error with a single `write`, so reports from threads do not interleave.
func reportToStandardError(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
