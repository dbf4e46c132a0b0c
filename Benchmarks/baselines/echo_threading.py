#!/usr/bin/env python3
"""socketserver.ThreadingTCPServer echo server (a thread per connection). Usage: echo_threading.py PORT"""
import socket
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:  # reset by the peer: just drop the connection
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


# Python ignores SIGPIPE already (writes raise instead); SIGTERM keeps its default action and ends the process.
server = Server(("127.0.0.1", int(sys.argv[1])), Echo)
print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
