#!/usr/bin/env python3
"""Server CPU per echoed request: the Reactor's two faces against libevent's bufferevent echo server.

Each round starts every server fresh, drives it with the closed-loop C client for SECONDS, and reads the
server's CPU time (utime + stime from /proc/PID/stat) before and after. Servers are interleaved, and the
medians over rounds are reported with ratios against the C baseline, because this machine is shared and noisy.

Usage: reactor_vs_libevent.py BUILD_DIR [CONNECTIONS=10,100,1000] [ROUNDS=3] [SECONDS=3]
"""
import os
import statistics
import subprocess
import sys

build = sys.argv[1]
connections = [int(n) for n in (sys.argv[2] if len(sys.argv) > 2 else "10,100,1000").split(",")]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0

servers = {
    "C libevent bufferevent": lambda port: [f"{build}/echo_bufferevent", str(port)],
    "Reactor callback": lambda port: [f"{build}/reactor-echo", f"127.0.0.1:{port}"],
    "Reactor async": lambda port: [f"{build}/reactor-echo", "--async", f"127.0.0.1:{port}"],
}
baseline = "C libevent bufferevent"


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


samples = {}
for _ in range(rounds):
    for n in connections:
        for name, command in servers.items():
            port = free_port()
            server = subprocess.Popen(command(port), stdout=subprocess.PIPE, text=True)
            try:
                server.stdout.readline()  # "listening on ..."
                before = cpu_seconds(server.pid)
                load = subprocess.run([f"{build}/echo_client", str(port), str(n), str(seconds)],
                                      capture_output=True, text=True, timeout=seconds + 30)
                after = cpu_seconds(server.pid)
            finally:
                server.terminate()
                server.wait()
            requests = int(load.stdout.split()[0]) if load.returncode == 0 and load.stdout else 0
            if requests == 0:
                sys.exit(f"{name} at {n} connections served nothing: {load.stderr.strip()}")
            samples.setdefault((name, n), []).append(((after - before) * 1e6 / requests, requests / seconds))

print(f"server CPU per echoed 32-byte request, median of {rounds} rounds of {seconds:g} s")
print(f"{'connections':>11}  {'server':<24} {'us/request':>10} {'requests/s':>11} {'vs C':>6}")
for n in connections:
    base = statistics.median(us for us, _ in samples[(baseline, n)])
    for name in servers:
        us = statistics.median(us for us, _ in samples[(name, n)])
        rate = statistics.median(rate for _, rate in samples[(name, n)])
        print(f"{n:>11}  {name:<24} {us:>10.2f} {rate:>11.0f} {us / base:>6.2f}")
