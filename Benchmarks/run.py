#!/usr/bin/env python3
"""make bench: the same echo workload against every server a user might pick, side by side, then the mini
Redis against redis-server, then memory per idle connection.

Every server runs as a child process on 127.0.0.1 and is driven by the closed-loop C client
(baselines/echo_client.c). Server CPU time comes from /proc (the process and its children), which is the
figure that survives a noisy machine; every row is run ROUNDS times, servers interleaved, and medians are
reported with ratios against libevent's bufferevent echo server. Writes results/latest.json and
results/latest.md and prints the Markdown.

Usage: run.py [--rounds N] [--seconds S] [--quick]
"""
import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RELEASE = os.path.join(ROOT, ".build", "release")
BENCH = os.path.join(ROOT, ".build", "bench")
NIO = os.path.join(ROOT, ".build-nio", "release", "nio-echo")
SOCKSERV = os.path.join(RELEASE, "sockserv")
CLIENT = os.path.join(BENCH, "echo_client")
BASELINE = "C libevent bufferevent"


def servers():
    py = sys.executable
    table = {
        "sockserv reactor, callback": [SOCKSERV, "serve", "echo", "--mode", "reactor", "--port", "{port}"],
        "sockserv reactor, callback, 2 loops": [SOCKSERV, "serve", "echo", "--mode", "reactor", "--loops", "2", "--port", "{port}"],
        "sockserv reactor, async": [SOCKSERV, "serve", "echo", "--mode", "reactor", "--handler", "async", "--port", "{port}"],
        "sockserv threading": [SOCKSERV, "serve", "echo", "--mode", "threading", "--port", "{port}"],
        "sockserv forking": [SOCKSERV, "serve", "echo", "--mode", "forking", "--port", "{port}"],
        BASELINE: [os.path.join(BENCH, "echo_bufferevent"), "{port}"],
        "C libevent plain events": [os.path.join(BENCH, "echo_libevent"), "{port}"],
        "C epoll": [os.path.join(BENCH, "echo_epoll"), "{port}"],
        "SwiftNIO, 1 loop": [NIO, "{port}"],
        "Python ThreadingTCPServer": [py, os.path.join(HERE, "baselines", "echo_threading.py"), "{port}"],
        "Python ForkingTCPServer": [py, os.path.join(HERE, "baselines", "echo_forking.py"), "{port}"],
        "Python asyncio": [py, os.path.join(HERE, "baselines", "echo_asyncio.py"), "{port}"],
    }
    return {name: command for name, command in table.items() if os.path.exists(command[0])}


# (label, connections, pipeline, connect per request)
ROWS = [
    ("1 connection", 1, 1, False),
    ("10 connections", 10, 1, False),
    ("100 connections", 100, 1, False),
    ("1,000 connections", 1000, 1, False),
    ("10 connections, pipeline 16", 10, 16, False),
    ("10 clients, connect per request", 10, 1, True),
    ("100 clients, connect per request", 100, 1, True),
]


def family(pid):
    """The process and its live children."""
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def run_time(pid):
    """Seconds the live threads of a process have run, to the nanosecond (/proc/PID/task/TID/schedstat)."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        pass
    return total / 1e9


def cpu_seconds(pid):
    """CPU of the process, its reaped children and its live children. Each live process counts to the
    nanosecond where possible: utime + stime are rounded down to a clock tick per process, which loses most
    of the time of many short-lived forked children (the same reading as sockserv's ProcessSample)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for member in family(pid):
        try:
            fields = open(f"/proc/{member}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is proc(5)'s field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
        total += max(run_time(member), (int(fields[11]) + int(fields[12])) / tick)
        if member == pid:
            total += (int(fields[13]) + int(fields[14])) / tick
    return total


def memory_bytes(pid):
    """Proportional set size of the process and its children (shared pages counted once)."""
    total = 0
    for member in family(pid):
        try:
            for line in open(f"/proc/{member}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Server:
    def __init__(self, command):
        self.process = subprocess.Popen([part.replace("{port}", "0") for part in command],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        match = re.search(r":(\d+)\s*$", line)
        if not match:
            self.stop()
            raise RuntimeError(f"{command[0]} printed {line!r}")
        self.port = int(match.group(1))
        self.pid = self.process.pid

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                for member in family(self.pid):
                    try:
                        os.kill(member, signal.SIGKILL)
                    except OSError:
                        pass
                self.process.wait()


def run_echo(command, connections, pipeline, per_request, seconds):
    server = Server(command)
    try:
        before = cpu_seconds(server.pid)
        arguments = [CLIENT, str(server.port), str(connections), str(seconds), "--pipeline", str(pipeline)]
        if per_request:
            arguments.append("--connect-per-request")
        load = subprocess.run(arguments, capture_output=True, text=True, timeout=seconds + 60)
        after = cpu_seconds(server.pid)
        memory = memory_bytes(server.pid)
    finally:
        server.stop()
    result = json.loads(load.stdout.strip().splitlines()[-1])
    requests = result["requests"]
    return {
        "requests_per_second": result["requests_per_second"],
        "p50_us": result["p50_us"], "p99_us": result["p99_us"],
        "cpu_us_per_request": (after - before) * 1e6 / requests if requests else None,
        "memory": memory, "errors": result["errors"],
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def echo_table(rounds, seconds, quick):
    table = servers()
    rows = ROWS[:3] if quick else ROWS
    samples = {}
    for round_number in range(rounds):
        for label, connections, pipeline, per_request in rows:
            for name, command in table.items():
                progress(f"echo round {round_number + 1}/{rounds}: {label}: {name}")
                try:
                    samples.setdefault((label, name), []).append(
                        run_echo(command, connections, pipeline, per_request, seconds))
                except Exception as error:  # a server that cannot keep up is reported, not waited for
                    samples.setdefault((label, name), []).append({"failed": str(error)[:120]})
    results = []
    for label, *_ in rows:
        base = median(s.get("cpu_us_per_request") for s in samples.get((label, BASELINE), []))
        for name in table:
            runs = samples[(label, name)]
            ok = [s for s in runs if "failed" not in s]
            row = {"row": label, "server": name, "rounds": len(runs), "failed_rounds": len(runs) - len(ok)}
            for key in ("requests_per_second", "p50_us", "p99_us", "cpu_us_per_request", "memory", "errors"):
                row[key] = median(s[key] for s in ok) if ok else None
            row["cpu_vs_bufferevent"] = (row["cpu_us_per_request"] / base) if base and row["cpu_us_per_request"] else None
            results.append(row)
    return results


def redis_table(rounds):
    if not (os.path.exists("/usr/bin/redis-server") and os.path.exists("/usr/bin/redis-benchmark")):
        return [], "redis-server or redis-benchmark is not installed (apt-get install redis-server redis-tools)"
    contenders = {
        "redis-server": ["/usr/bin/redis-server", "--port", "{port}", "--save", "", "--appendonly", "no"],
        "sockserv resp (reactor)": [SOCKSERV, "serve", "resp", "--port", "{port}"],
    }
    samples = {}
    for round_number in range(rounds):
        for pipeline in (1, 16):
            for name, command in contenders.items():
                progress(f"redis round {round_number + 1}/{rounds}: -P {pipeline}: {name}")
                port = free_port()
                process = subprocess.Popen([p.replace("{port}", str(port)) for p in command],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wait_for_port(port)
                before = cpu_seconds(process.pid)
                out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "ping_inline,ping_mbulk,set,get,incr",
                                      "-c", "50", "-n", "100000", "-P", str(pipeline), "--csv"],
                                     capture_output=True, text=True, timeout=300).stdout
                after = cpu_seconds(process.pid)
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10)
                total = 0
                for line in out.splitlines():
                    fields = [f.strip('"') for f in line.split(",")]
                    if len(fields) >= 2 and fields[0] != "test":
                        samples.setdefault((pipeline, fields[0], name), []).append(float(fields[1]))
                        total += 100000
                samples.setdefault((pipeline, "cpu", name), []).append((after - before) * 1e6 / max(total, 1))
    results = []
    for pipeline in (1, 16):
        for test in ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"):
            redis = median(samples.get((pipeline, test, "redis-server"), []))
            ours = median(samples.get((pipeline, test, "sockserv resp (reactor)"), []))
            results.append({"pipeline": pipeline, "test": test, "redis_server_rps": redis, "sockserv_rps": ours,
                            "ratio": ours / redis if redis and ours else None})
        results.append({"pipeline": pipeline, "test": "server CPU us/request",
                        "redis_server_rps": median(samples.get((pipeline, "cpu", "redis-server"), [])),
                        "sockserv_rps": median(samples.get((pipeline, "cpu", "sockserv resp (reactor)"), [])),
                        "ratio": None})
    return results, None


def idle_table(connections):
    table = servers()
    names = ["sockserv reactor, callback", "sockserv reactor, async", BASELINE, "C libevent plain events",
             "SwiftNIO, 1 loop", "Python asyncio"]
    results = []
    for name in names:
        if name not in table:
            continue
        progress(f"idle: {connections} connections: {name}")
        server = Server(table[name])
        try:
            time.sleep(0.2)
            before = memory_bytes(server.pid)
            holder = subprocess.Popen([CLIENT, str(server.port), str(connections), "60", "--idle"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            line = holder.stdout.readline()
            held = int(line.split()[1]) if line.startswith("connected") else 0
            time.sleep(1.0)
            after = memory_bytes(server.pid)
            holder.stdin.close()
            holder.wait(timeout=30)
        finally:
            server.stop()
        results.append({"server": name, "connections": held, "memory_before": before, "memory_after": after,
                        "bytes_per_connection": (after - before) / held if held else None})
    return results


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port):
    import socket
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)


def progress(text):
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text[:100].ljust(100))
        sys.stderr.flush()


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def markdown(document):
    out = [f"# make bench, {document['date']}", "",
           f"{document['machine']}. Echo: 32-byte requests, closed loop, {document['seconds']:g} s per run, "
           f"median of {document['rounds']} interleaved rounds; CPU is the server's (and its children's) from /proc; "
           f"ratio is CPU per request against libevent's bufferevent echo server. Memory is PSS after the run.", ""]
    rows = []
    for row in document["echo"]:
        if row["row"] not in rows:
            rows.append(row["row"])
    for label in rows:
        out += [f"### {label}", "", "| server | requests/s | p50 us | p99 us | CPU us/request | CPU vs bufferevent | memory MiB | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in document["echo"]:
            if row["row"] != label:
                continue
            note = f" ({row['failed_rounds']} of {row['rounds']} rounds failed)" if row["failed_rounds"] else ""
            out.append(f"| {row['server']}{note} | {fmt(row['requests_per_second'], '.0f')} | {fmt(row['p50_us'], '.0f')} | "
                       f"{fmt(row['p99_us'], '.0f')} | {fmt(row['cpu_us_per_request'], '.1f')} | "
                       f"{fmt(row['cpu_vs_bufferevent'], '.2f')} | "
                       f"{fmt(row['memory'] / 1048576 if row['memory'] else None, '.1f')} | {fmt(row['errors'], '.0f')} |")
        out.append("")
    if document["redis"]:
        out += ["### redis-benchmark -c 50 -n 100000: sockserv serve resp against redis-server", "",
                "| pipeline | test | redis-server | sockserv resp | ratio |", "|---:|---|---:|---:|---:|"]
        for row in document["redis"]:
            out.append(f"| {row['pipeline']} | {row['test']} | {fmt(row['redis_server_rps'], '.1f')} | "
                       f"{fmt(row['sockserv_rps'], '.1f')} | {fmt(row['ratio'], '.2f')} |")
        out.append("")
    elif document.get("redis_skipped"):
        out += [f"redis: skipped, {document['redis_skipped']}", ""]
    if document["idle"]:
        out += ["### Memory per idle connection", "", "| server | connections held | memory before MiB | after MiB | bytes per connection |",
                "|---|---:|---:|---:|---:|"]
        for row in document["idle"]:
            out.append(f"| {row['server']} | {row['connections']} | {row['memory_before'] / 1048576:.1f} | "
                       f"{row['memory_after'] / 1048576:.1f} | {fmt(row['bytes_per_connection'], '.0f')} |")
        out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--idle", type=int, default=9000)
    parser.add_argument("--quick", action="store_true", help="three rows, one round, no redis or idle run")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    document = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "rounds": rounds, "seconds": args.seconds,
        "echo": echo_table(rounds, args.seconds, args.quick),
        "redis": [], "idle": [],
    }
    if not args.quick:
        document["redis"], document["redis_skipped"] = redis_table(rounds)
        document["idle"] = idle_table(args.idle)
    progress("")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "latest.json"), "w") as f:
        json.dump(document, f, indent=2)
    text = markdown(document)
    with open(os.path.join(HERE, "results", "latest.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"\nwritten: {os.path.join(HERE, 'results', 'latest.json')} and latest.md")


if __name__ == "__main__":
    main()
