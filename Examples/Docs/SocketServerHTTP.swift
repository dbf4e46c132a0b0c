// The names the SocketServerHTTP article's code blocks use without defining them: none of its own yet, only
// Common.swift's (see README.md here).
