#!/usr/bin/env python3
"""socketserver.ForkingTCPServer echo server (a process per connection). Usage: echo_forking.py PORT"""
import os
import signal
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


class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True
    request_queue_size = 1024
    max_children = 10000  # the default of 40 would make the 41st connection wait for one to end


server = Server(("127.0.0.1", int(sys.argv[1])), Echo)
parent = os.getpid()


def terminate(signum, frame):
    # The parent takes its children with it, so no echo process outlives the server; a child just exits.
    if os.getpid() == parent:
        for pid in list(server.active_children or ()):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
    os._exit(0)


signal.signal(signal.SIGTERM, terminate)
print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
