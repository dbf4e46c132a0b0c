#!/usr/bin/env python3
"""make bench: the same echo workload against every server a user might pick, side by side, then the mini
Redis against redis-server, then memory per idle connection, then HTTP file serving (sockserv serve http
against nginx, Hummingbird and Python's http.server, driven by wrk), then TLS (sockserv against libevent's
bufferevent_openssl echo server and nginx over HTTPS), then a mixed workload (1 request in 100 blocks for 10 ms)
in every mode, the reactor on 1 and 2 loops, and sockserv serve proxy in front of redis-server against haproxy.

Every server runs as a child process on 127.0.0.1 and is driven by the closed-loop C client
(baselines/echo_client.c). Server CPU time comes from /proc (the process and its children), which is the
figure that survives a noisy machine; every row is run ROUNDS times, servers interleaved, and medians are
reported with ratios against libevent's bufferevent echo server. Writes results/latest.json and
results/latest.md and prints the Markdown.

Usage: run.py [--rounds N] [--seconds S] [--quick] [--only echo|redis|idle|http|tls|mixed|loops|proxy]
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
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RELEASE = os.path.join(ROOT, ".build", "release")
BENCH = os.path.join(ROOT, ".build", "bench")
NIO = os.path.join(ROOT, ".build-nio", "release", "nio-echo")
SOCKSERV = os.path.join(RELEASE, "sockserv")
CLIENT = os.path.join(BENCH, "echo_client")
SPREAD = os.path.join(RELEASE, "bench-spread")
BASELINE = "C libevent bufferevent"
EPOLL = "C epoll"


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
    def __init__(self, command, keep_output=False):
        self.errors = tempfile.TemporaryFile(mode="w+") if keep_output else subprocess.DEVNULL
        self.process = subprocess.Popen([part.replace("{port}", "0") for part in command],
                                        stdout=subprocess.PIPE, stderr=self.errors, text=True)
        line = self.process.stdout.readline()
        match = re.search(r":(\d+)(?: \(tls\))?\s*$", line)
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

    def output(self):
        """After stop(): what the server printed after its first line, and on standard error (keep_output)."""
        text = self.process.stdout.read()
        if self.errors is not subprocess.DEVNULL:
            self.errors.seek(0)
            text += self.errors.read()
        return text


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


# The mixed workload: resp, every MIXED_EVERY-th request a 10 ms blocking call (DEBUG SLEEP 0.01), the rest PING.
MIXED_EVERY = 100
MIXED_ROWS = [("10 connections", 10), ("100 connections", 100)]
MIXED_BASELINE = "sockserv threading"


def mixed_servers():
    resp = [SOCKSERV, "serve", "resp", "--port", "{port}", "--mode"]
    return {
        MIXED_BASELINE: resp + ["threading"],
        "sockserv forking": resp + ["forking"],
        "sockserv reactor, blocking call on the loop": resp + ["reactor", "--blocking-work", "loop"],
        "sockserv reactor with pool (default: a thread per core)": resp + ["reactor"],
        "sockserv reactor with pool of 32": resp + ["reactor", "--blocking-threads", "32"],
        "sockserv reactor with pool of 32, 2 loops": resp + ["reactor", "--blocking-threads", "32", "--loops", "2"],
    }


def run_mixed(command, connections, seconds):
    server = Server(command)
    try:
        before = cpu_seconds(server.pid)
        load = subprocess.run([CLIENT, str(server.port), str(connections), str(seconds), "--mixed", str(MIXED_EVERY)],
                              capture_output=True, text=True, timeout=seconds + 60)
        after = cpu_seconds(server.pid)
    finally:
        server.stop()
    result = json.loads(load.stdout.strip().splitlines()[-1])
    requests = result["requests"]
    return {
        "requests_per_second": result["requests_per_second"], "p50_us": result["p50_us"],
        "p99_us": result["p99_us"], "p999_us": result["p999_us"], "fast_p99_us": result["fast_p99_us"],
        "slow_p50_us": result["slow_p50_us"],
        "cpu_us_per_request": (after - before) * 1e6 / requests if requests else None, "errors": result["errors"],
    }


def mixed_table(rounds, seconds):
    table = mixed_servers()
    samples = interleaved("mixed", rounds, MIXED_ROWS, table, lambda command, row: run_mixed(command, row[1], seconds))
    results = []
    for label, _ in MIXED_ROWS:
        base = samples.get((label, MIXED_BASELINE), [])
        for name in table:
            runs = samples[(label, name)]
            row = summarize(label, name, runs, ("requests_per_second", "p50_us", "p99_us", "p999_us", "fast_p99_us",
                                                "slow_p50_us", "cpu_us_per_request", "errors"))
            row["p99_vs_threading"] = paired_ratio(runs, base, "p99_us")
            row["cpu_vs_threading"] = paired_ratio(runs, base, "cpu_us_per_request")
            results.append(row)
    return results


# Reactor on 1 and 2 loops: sockserv's LoopGroup (one acceptor handing connections to the loops), and bench-spread's
# two ways of spreading one port's connections, side by side; every 2-loop row's CPU per request against 1 loop's.
LOOP_ROWS = [("100 connections", 100, False), ("100 clients, connect per request", 100, True)]
LOOP_BASELINE = "sockserv reactor, 1 loop"


def loop_servers():
    echo = [SOCKSERV, "serve", "echo", "--port", "{port}"]
    table = {
        LOOP_BASELINE: echo,
        "sockserv reactor, 2 loops (LoopGroup)": echo + ["--loops", "2"],
        "bench-spread: 2 loops, one acceptor hands off": [SPREAD, "handoff", "2", "{port}"],
        "bench-spread: 2 loops, SO_REUSEPORT listener each": [SPREAD, "reuseport", "2", "{port}"],
    }
    return {name: command for name, command in table.items() if os.path.exists(command[0])}


def run_loops(command, connections, per_request, seconds):
    server = Server(command, keep_output=True)
    try:
        before = cpu_seconds(server.pid)
        arguments = [CLIENT, str(server.port), str(connections), str(seconds)]
        if per_request:
            arguments.append("--connect-per-request")
        load = subprocess.run(arguments, capture_output=True, text=True, timeout=seconds + 60)
        after = cpu_seconds(server.pid)
    finally:
        server.stop()
    output = server.output()
    result = json.loads(load.stdout.strip().splitlines()[-1])
    requests = result["requests"]
    per_loop = re.search(r"(?:connections|served) per loop: ([\d ]+)", output)
    return {
        "requests_per_second": result["requests_per_second"], "p99_us": result["p99_us"],
        "cpu_us_per_request": (after - before) * 1e6 / requests if requests else None, "errors": result["errors"],
        "per_loop": [int(n) for n in per_loop.group(1).split()] if per_loop else None,
        "connected": result["connected"],
    }


def loops_table(rounds, seconds):
    table = loop_servers()
    samples = interleaved("loops", rounds, LOOP_ROWS, table,
                          lambda command, row: run_loops(command, row[1], row[2], seconds))
    results = []
    for label, *_ in LOOP_ROWS:
        base = samples.get((label, LOOP_BASELINE), [])
        for name in table:
            runs = samples[(label, name)]
            row = summarize(label, name, runs, ("requests_per_second", "p99_us", "cpu_us_per_request", "errors"))
            row["cpu_vs_one_loop"] = paired_ratio(runs, base, "cpu_us_per_request")
            last = [run for run in runs if run.get("per_loop")]
            row["per_loop"] = last[-1]["per_loop"] if last else None
            results.append(row)
    return results


# A TCP proxy in front of redis-server: redis-benchmark -c 50 GET through sockserv serve proxy in each mode, against
# haproxy in TCP mode with one thread, and straight to redis-server for reference. CPU per request is the proxy's
# (its children's included) from /proc over the benchmark; the idle row holds PROXY_IDLE client connections through
# each proxy (each one a pair: the client's and the upstream's) and reads the proxy's memory (PSS) before and while.
PROXY_BASELINE = "haproxy 2.6, 1 thread, mode tcp"
PROXY_REQUESTS = 200000
PROXY_IDLE = 9000  # pairs: 10,000 would need 20,000 descriptors and more, past this machine's hard limit of 20,000
HAPROXY = "/usr/sbin/haproxy"


def haproxy_command(upstream_port):
    """haproxy's command, as a function of the port to listen on (it writes the configuration for that port)."""
    def command(port):
        config = os.path.join(BENCH, f"haproxy-{port}.cfg")
        with open(config, "w") as f:
            f.write(f"""global
    nbthread 1
    maxconn 9500
defaults
    mode tcp
    maxconn 9500
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend proxy
    bind 127.0.0.1:{port}
    default_backend upstream
backend upstream
    server up 127.0.0.1:{upstream_port}
""")
        return [HAPROXY, "-db", "-f", config]
    return command


def proxy_servers(upstream_port):
    proxy = [SOCKSERV, "serve", "proxy", "--port", "{port}", "--upstream", f"127.0.0.1:{upstream_port}", "--mode"]
    table = {
        PROXY_BASELINE: haproxy_command(upstream_port),
        "sockserv proxy, reactor": proxy + ["reactor"],
        "sockserv proxy, threading": proxy + ["threading"],
        "sockserv proxy, forking": proxy + ["forking"],
    }
    return {name: command for name, command in table.items() if name != PROXY_BASELINE or os.path.exists(HAPROXY)}


def start_on_free_port(command):
    port = free_port()
    arguments = command(port) if callable(command) else [part.replace("{port}", str(port)) for part in command]
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process, port


def stop_process(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_proxy(command, upstream_port):
    """One redis-benchmark GET run through `command` (None: straight to redis-server)."""
    process, port = start_on_free_port(command) if command else (None, upstream_port)
    try:
        before = cpu_seconds(process.pid) if process else 0
        out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-c", "50", "-n", str(PROXY_REQUESTS),
                              "--csv"], capture_output=True, text=True, timeout=300).stdout
        after = cpu_seconds(process.pid) if process else 0
    finally:
        if process:
            stop_process(process)
    rows = [[f.strip('"') for f in line.split(",")] for line in out.splitlines()]
    rps = next((float(r[1]) for r in rows if len(r) > 1 and r[0] == "GET"), None)
    if rps is None:
        raise RuntimeError(f"redis-benchmark printed {out[:80]!r}")
    return {"requests_per_second": rps,
            "cpu_us_per_request": (after - before) * 1e6 / PROXY_REQUESTS if process else None}


def proxy_idle(command, connections, upstream_port):
    """The proxy's memory (PSS) before and while `connections` idle clients are held through it, and its descriptors."""
    process, port = start_on_free_port(command)
    try:
        time.sleep(0.2)
        before = memory_bytes(process.pid)
        base_descriptors = len(os.listdir(f"/proc/{process.pid}/fd"))
        holder = subprocess.Popen([CLIENT, str(port), str(connections), "60", "--idle"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = holder.stdout.readline()
        held = int(line.split()[1]) if line.startswith("connected") else 0
        # The clients are connected once the kernel has them; the proxy accepts them and connects upstream after.
        # Wait until it holds a descriptor for both ends of every pair (or its count stops growing for 2 s).
        deadline, last, steady = time.time() + 30, -1, 0
        while time.time() < deadline and steady < 4:
            time.sleep(0.5)
            descriptors = len(os.listdir(f"/proc/{process.pid}/fd"))
            if descriptors >= base_descriptors + 2 * held:
                break
            steady = steady + 1 if descriptors == last else 0
            last = descriptors
        time.sleep(0.5)
        after = memory_bytes(process.pid)
        descriptors = len(os.listdir(f"/proc/{process.pid}/fd"))
        holder.stdin.close()
        holder.wait(timeout=60)
    finally:
        stop_process(process)
    pairs = min(held, (descriptors - base_descriptors) // 2)  # the pairs the proxy holds both ends of
    return {"connections": held, "pairs": pairs, "memory_before": before, "memory_after": after,
            "descriptors": descriptors, "bytes_per_pair": (after - before) / pairs if pairs > 0 else None}


def proxy_table(rounds, idle_connections):
    if not (os.path.exists("/usr/bin/redis-server") and os.path.exists("/usr/bin/redis-benchmark")):
        return {}, "redis-server or redis-benchmark is not installed (apt-get install redis-server redis-tools)"
    redis, redis_port = start_on_free_port(["/usr/bin/redis-server", "--port", "{port}", "--save", "",
                                            "--appendonly", "no"])
    try:
        subprocess.run(["redis-cli", "-p", str(redis_port), "set", "key:__rand_int__", "x"], capture_output=True)
        table = proxy_servers(redis_port)
        table_with_direct = {"redis-server directly (no proxy)": None, **table}
        samples = interleaved("proxy", rounds, [("redis-benchmark -c 50 GET",)], table_with_direct,
                              lambda command, row: run_proxy(command, redis_port))
    finally:
        stop_process(redis)
    rows = []
    base = samples.get(("redis-benchmark -c 50 GET", PROXY_BASELINE), [])
    for name in table_with_direct:
        runs = samples[("redis-benchmark -c 50 GET", name)]
        row = summarize("redis-benchmark -c 50 GET", name, runs, ("requests_per_second", "cpu_us_per_request"))
        row["cpu_vs_haproxy"] = paired_ratio(runs, base, "cpu_us_per_request") if table_with_direct[name] else None
        rows.append(row)
    # Idle pairs: the upstream is a reactor echo server (cheap, and with no client limit below 10,000).
    upstream = Server([SOCKSERV, "serve", "echo", "--port", "{port}"])
    idle = []
    try:
        for name in (PROXY_BASELINE, "sockserv proxy, reactor"):
            if name in table:
                progress(f"proxy idle: {idle_connections} pairs: {name}")
                command = proxy_servers(upstream.port)[name]
                idle.append({"server": name, **proxy_idle(command, idle_connections, upstream.port)})
    finally:
        upstream.stop()
    return {"rows": rows, "idle": idle}, None


def interleaved(kind, rounds, rows, table, measure):
    """Every server of `table` on every row, `rounds` times, servers interleaved within a round: samples by (row
    label, server). `measure(command, row)` makes one; a row is a tuple whose first item is its label. A run that
    fails is a sample too (a server that cannot keep up is reported, not waited for)."""
    samples = {}
    for round_number in range(rounds):
        for row in rows:
            for name, command in table.items():
                progress(f"{kind} round {round_number + 1}/{rounds}: {row[0]}: {name}")
                try:
                    samples.setdefault((row[0], name), []).append(measure(command, row))
                except Exception as error:
                    samples.setdefault((row[0], name), []).append({"failed": str(error)[:120]})
    return samples


def summarize(label, name, runs, keys):
    """One table row: the medians of `keys` over the runs that did not fail, and how many did."""
    ok = [s for s in runs if "failed" not in s]
    row = {"row": label, "server": name, "rounds": len(runs), "failed_rounds": len(runs) - len(ok)}
    for key in keys:
        row[key] = median(s[key] for s in ok) if ok else None
    return row


def ratio(value, base):
    return value / base if base and value else None


def paired_ratio(runs, base_runs, key):
    """The median over rounds of this server's `key` divided by the baseline's in the same round.

    Rounds are interleaved, so a server and its baseline run minutes apart at most; the ratio within a round cancels
    what the shared machine was doing then (CPU steal moves both), which a ratio of two medians does not.
    """
    pairs = [ratio(run.get(key), base.get(key)) for run, base in zip(runs, base_runs)
             if "failed" not in run and "failed" not in base]
    return median(pairs)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def echo_table(rounds, seconds, quick):
    table = servers()
    rows = ROWS[:3] if quick else ROWS
    samples = interleaved("echo", rounds, rows, table,
                          lambda command, row: run_echo(command, *row[1:], seconds))
    results = []
    for label, *_ in rows:
        base = samples.get((label, BASELINE), [])
        for name in table:
            row = summarize(label, name, samples[(label, name)],
                            ("requests_per_second", "p50_us", "p99_us", "cpu_us_per_request", "memory", "errors"))
            row["cpu_vs_bufferevent"] = paired_ratio(samples[(label, name)], base, "cpu_us_per_request")
            row["cpu_vs_epoll"] = paired_ratio(samples[(label, name)], samples.get((label, EPOLL), []),
                                               "cpu_us_per_request")
            results.append(row)
    return results


# Requests per redis-benchmark test: pipelined, 100,000 take a tenth of a second, too short to measure the CPU of.
REDIS_REQUESTS = {1: 100000, 16: 500000}


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
                count = REDIS_REQUESTS[pipeline]
                out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "ping_inline,ping_mbulk,set,get,incr",
                                      "-c", "50", "-n", str(count), "-P", str(pipeline), "--csv"],
                                     capture_output=True, text=True, timeout=300).stdout
                after = cpu_seconds(process.pid)
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10)
                total = 0
                for line in out.splitlines():
                    fields = [f.strip('"') for f in line.split(",")]
                    if len(fields) >= 2 and fields[0] != "test":
                        samples.setdefault((pipeline, fields[0], name), []).append(float(fields[1]))
                        total += count
                samples.setdefault((pipeline, "cpu", name), []).append((after - before) * 1e6 / max(total, 1))
    results = []
    for pipeline in (1, 16):
        for test in ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "cpu"):
            redis = samples.get((pipeline, test, "redis-server"), [])
            ours = samples.get((pipeline, test, "sockserv resp (reactor)"), [])
            results.append({"pipeline": pipeline, "test": "server CPU us/request" if test == "cpu" else test,
                            "redis_server_rps": median(redis), "sockserv_rps": median(ours),
                            "ratio": median(ratio(a, b) for a, b in zip(ours, redis))})
    return results, None


def idle_table(connections):
    table = servers()
    names = ["sockserv reactor, callback", "sockserv reactor, async", BASELINE, "C libevent plain events",
             "SwiftNIO, 1 loop", "Python asyncio"]
    return idle_memory({name: table[name] for name in names if name in table}, connections)


def idle_memory(table, connections, client_options=()):
    """Each server's memory (PSS) before and while `connections` idle connections are held."""
    results = []
    for name, command in table.items():
        progress(f"idle: {connections} connections: {name}")
        server = Server(command)
        try:
            time.sleep(0.2)
            before = memory_bytes(server.pid)
            holder = subprocess.Popen([CLIENT, str(server.port), str(connections), "60", "--idle", *client_options],
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


# HTTP: the same directory served by each contender, loaded by wrk (one thread). A 1 KiB file with keep-alive
# at 100 connections, and a 100 MiB file to 4 clients. CPU is the server's (and its children's) from /proc.
HB = os.path.join(ROOT, ".build-hummingbird", "release", "hummingbird-files")
HTTP_BASELINE = "nginx (1 worker, sendfile)"
HTTP_THREADS = os.path.join(BENCH, "http_threads")
WWW = os.path.join(BENCH, "www")


def http_site():
    os.makedirs(WWW, exist_ok=True)
    with open(os.path.join(WWW, "1k.bin"), "wb") as f:
        f.write(bytes(range(256)) * 4)
    with open(os.path.join(WWW, "100m.bin"), "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(100):
            f.write(block)


def nginx_command(port, open_file_cache=False):
    directory = os.path.join(BENCH, "nginx-cache" if open_file_cache else "nginx")
    os.makedirs(directory, exist_ok=True)
    config = os.path.join(directory, "nginx.conf")
    with open(config, "w") as f:
        f.write(f"""daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    {"open_file_cache max=64;" if open_file_cache else ""}
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    types {{ application/octet-stream bin; }}
    server {{ listen 127.0.0.1:{port}; root {WWW}; }}
}}
""")
    return ["/usr/sbin/nginx", "-c", config, "-p", directory]


def http_servers():
    table = {
        "sockserv reactor": lambda port: [SOCKSERV, "serve", "http", "--mode", "reactor", "--root", WWW,
                                          "--port", str(port), "--log-level", "warning"],
        "sockserv threading": lambda port: [SOCKSERV, "serve", "http", "--mode", "threading", "--root", WWW,
                                            "--port", str(port), "--log-level", "warning"],
        HTTP_BASELINE: nginx_command,
        # nginx keeping files open as sockserv does (its cache trusts a file for 60 s; sockserv's looks each time).
        "nginx, open_file_cache max=64": lambda port: nginx_command(port, open_file_cache=True),
        # The thread-per-connection model's floor: C, blocking, the least a file server does (baselines/).
        "C thread per connection": lambda port: [HTTP_THREADS, str(port), WWW],
        "Hummingbird 2 (FileMiddleware)": lambda port: [HB, str(port), WWW],
        "Python ThreadingHTTPServer": lambda port: [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                                    "--directory", WWW, str(port)],
    }
    present = {"sockserv reactor": SOCKSERV, "sockserv threading": SOCKSERV, HTTP_BASELINE: "/usr/sbin/nginx",
               "nginx, open_file_cache max=64": "/usr/sbin/nginx",
               "C thread per connection": HTTP_THREADS, "Hummingbird 2 (FileMiddleware)": HB,
               "Python ThreadingHTTPServer": sys.executable}
    return {name: make for name, make in table.items() if os.path.exists(present[name])}


HTTP_ROWS = [
    ("1 KiB file, keep-alive, 100 connections", "/1k.bin", 100),
    ("100 MiB file, 4 clients", "/100m.bin", 4),
]


def wrk(port, path, connections, seconds, scheme="http"):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                          f"{scheme}://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    requests = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if not requests:
        raise RuntimeError(f"wrk printed {out[-200:]!r}")
    count = int(requests.group(1))
    unit = {"B": 1, "KB": 1024, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[requests.group(5)]
    read = float(requests.group(4)) * unit
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return count, read, errors + (int(non2xx.group(1)) if non2xx else 0)


def run_http(make, path, connections, seconds, scheme="http"):
    port = free_port()
    process = subprocess.Popen(make(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        subprocess.run(["curl", "-s", "-k", "-o", "/dev/null", f"{scheme}://127.0.0.1:{port}{path}"], timeout=60)  # warm
        before = cpu_seconds(process.pid)
        start = time.time()
        count, read, errors = wrk(port, path, connections, seconds, scheme)
        elapsed = time.time() - start
        cpu = cpu_seconds(process.pid) - before
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            for member in family(process.pid):
                try:
                    os.kill(member, signal.SIGKILL)
                except OSError:
                    pass
            process.wait()
    mib = read / (1 << 20)
    return {"requests_per_second": count / seconds, "mib_per_second": mib / seconds,
            "cpu_us_per_request": cpu * 1e6 / count if count else None,
            "cpu_ms_per_mib": cpu * 1e3 / mib if mib else None, "errors": errors}


def syscalls_per_request(make, path, connections, seconds):
    """System calls per request over a keep-alive run: `strace -c -f` attached to the server (and its
    threads and children) after its connections are warm, total calls over the requests wrk counted.
    None without strace."""
    if not os.path.exists("/usr/bin/strace"):
        return None
    port = free_port()
    process = subprocess.Popen(make(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = os.path.join(BENCH, "strace.txt")
    try:
        wait_for_port(port)
        subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"], timeout=60)
        targets = sum((["-p", str(pid)] for pid in family(process.pid)), [])
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", report] + targets, stderr=subprocess.DEVNULL)
        time.sleep(1)  # attached
        count, _, _ = wrk(port, path, connections, seconds)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
    finally:
        stop_process(process)
    total = re.search(r"^\S+\s+\S+\s+\S+\s+(\d+)\s+(?:\d+\s+)?total$", open(report).read(), re.M)
    return int(total.group(1)) / count if total and count else None


def http_table(rounds, seconds):
    if not os.path.exists("/usr/bin/wrk"):
        return [], "wrk is not installed (apt-get install wrk)"
    http_site()
    table = http_servers()
    samples = interleaved("http", rounds, HTTP_ROWS, table, lambda make, row: run_http(make, row[1], row[2], seconds))
    results = []
    for label, path, connections in HTTP_ROWS:
        base = samples.get((label, HTTP_BASELINE), [])
        for name in table:
            runs = samples[(label, name)]
            row = summarize(label, name, runs,
                            ("requests_per_second", "mib_per_second", "cpu_us_per_request", "cpu_ms_per_mib", "errors"))
            row["cpu_per_request_vs_nginx"] = paired_ratio(runs, base, "cpu_us_per_request")
            row["cpu_per_mib_vs_nginx"] = paired_ratio(runs, base, "cpu_ms_per_mib")
            row["requests_vs_nginx"] = paired_ratio(runs, base, "requests_per_second")
            if connections > 4:  # keep-alive rows: how many system calls one request costs
                progress(f"http: {label}: {name}: counting system calls")
                try:
                    row["syscalls_per_request"] = syscalls_per_request(table[name], path, connections, seconds)
                except Exception:
                    row["syscalls_per_request"] = None
            results.append(row)
    return results, None


# TLS: one ECDSA P-256 certificate for 127.0.0.1, made with the openssl command; every server uses it. The load
# is echo_client --tls (full handshakes, no session reuse, no certificate check: it measures the server) and wrk
# over https for the 1 KiB file.
TLS_DIR = os.path.join(BENCH, "tls")
TLS_CERT = os.path.join(TLS_DIR, "cert.pem")
TLS_KEY = os.path.join(TLS_DIR, "key.pem")
TLS_BASELINE = "C libevent bufferevent_openssl"
TLS_HTTP_BASELINE = "nginx (1 worker, TLS)"


def tls_certificate():
    os.makedirs(TLS_DIR, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", TLS_KEY, "-out", TLS_CERT, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)


def tls_servers():
    tls = ["--tls-cert", TLS_CERT, "--tls-key", TLS_KEY]
    table = {
        "sockserv reactor, callback": [SOCKSERV, "serve", "echo", "--mode", "reactor", "--port", "{port}"] + tls,
        "sockserv threading": [SOCKSERV, "serve", "echo", "--mode", "threading", "--port", "{port}"] + tls,
        TLS_BASELINE: [os.path.join(BENCH, "echo_bufferevent_openssl"), "{port}", TLS_CERT, TLS_KEY],
    }
    return {name: command for name, command in table.items() if os.path.exists(command[0])}


# (label, connections, connect per request): echo after the handshakes, then full handshakes.
TLS_ROWS = [
    ("echo after the handshake, 10 connections", 10, False),
    ("echo after the handshake, 100 connections", 100, False),
    ("echo after the handshake, 1,000 connections", 1000, False),
    ("full handshakes, 10 concurrent clients", 10, True),
]


def run_tls_echo(command, connections, per_request, seconds):
    """One TLS run. Persistent connections are all connected (handshakes done) before the server's CPU is read."""
    server = Server(command)
    try:
        arguments = [CLIENT, str(server.port), str(connections), str(seconds), "--tls"]
        if per_request:
            arguments.append("--connect-per-request")
            before = cpu_seconds(server.pid)
            load = subprocess.run(arguments, capture_output=True, text=True, timeout=seconds + 60)
            out = load.stdout
        else:
            client = subprocess.Popen(arguments + ["--hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
            line = client.stdout.readline()
            if not line.startswith("connected"):
                raise RuntimeError(f"echo_client printed {line!r}")
            before = cpu_seconds(server.pid)
            out, _ = client.communicate("\n", timeout=seconds + 60)
        after = cpu_seconds(server.pid)
    finally:
        server.stop()
    result = json.loads(out.strip().splitlines()[-1])
    requests = result["requests"]
    return {"requests_per_second": result["requests_per_second"], "p50_us": result["p50_us"],
            "p99_us": result["p99_us"], "cpu_us_per_request": (after - before) * 1e6 / requests if requests else None,
            "errors": result["errors"]}


def nginx_tls_command(port):
    command = nginx_command(port)
    config = command[2]
    with open(config) as f:
        text = f.read()
    text = text.replace(f"server {{ listen 127.0.0.1:{port}; root {WWW}; }}",
                        f"server {{ listen 127.0.0.1:{port} ssl; root {WWW}; ssl_certificate {TLS_CERT}; "
                        f"ssl_certificate_key {TLS_KEY}; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on; }}")
    with open(config, "w") as f:
        f.write(text)
    return command


def tls_http_servers():
    tls = ["--tls-cert", TLS_CERT, "--tls-key", TLS_KEY]
    table = {
        "sockserv reactor": lambda port: [SOCKSERV, "serve", "http", "--mode", "reactor", "--root", WWW,
                                          "--port", str(port), "--log-level", "warning"] + tls,
        "sockserv threading": lambda port: [SOCKSERV, "serve", "http", "--mode", "threading", "--root", WWW,
                                            "--port", str(port), "--log-level", "warning"] + tls,
        TLS_HTTP_BASELINE: nginx_tls_command,
    }
    present = {"sockserv reactor": SOCKSERV, "sockserv threading": SOCKSERV, TLS_HTTP_BASELINE: "/usr/sbin/nginx"}
    return {name: make for name, make in table.items() if os.path.exists(present[name])}


def tls_table(rounds, seconds, http_seconds, idle_connections):
    if not os.path.exists(os.path.join(BENCH, "echo_bufferevent_openssl")):
        return {}, "the C bufferevent_openssl baseline did not build"
    tls_certificate()
    table = tls_servers()
    samples = {}
    http = tls_http_servers() if os.path.exists("/usr/bin/wrk") else {}
    if http:
        http_site()
    for round_number in range(rounds):
        for label, connections, per_request in TLS_ROWS:
            for name, command in table.items():
                progress(f"tls round {round_number + 1}/{rounds}: {label}: {name}")
                try:
                    samples.setdefault((label, name), []).append(
                        run_tls_echo(command, connections, per_request, seconds))
                except Exception as error:
                    samples.setdefault((label, name), []).append({"failed": str(error)[:120]})
        for name, make in http.items():
            progress(f"tls round {round_number + 1}/{rounds}: https 1 KiB: {name}")
            try:
                samples.setdefault(("https", name), []).append(
                    run_http(make, "/1k.bin", 100, http_seconds, scheme="https"))
            except Exception as error:
                samples.setdefault(("https", name), []).append({"failed": str(error)[:120]})
    echo = []
    for label, *_ in TLS_ROWS:
        base = samples.get((label, TLS_BASELINE), [])
        for name in table:
            runs = samples[(label, name)]
            row = summarize(label, name, runs, ("requests_per_second", "p50_us", "p99_us", "cpu_us_per_request", "errors"))
            row["cpu_vs_c"] = paired_ratio(runs, base, "cpu_us_per_request")
            row["rate_vs_c"] = paired_ratio(runs, base, "requests_per_second")
            echo.append(row)
    https = []
    base = samples.get(("https", TLS_HTTP_BASELINE), [])
    for name in http:
        row = summarize("https", name, samples[("https", name)], ("requests_per_second", "cpu_us_per_request", "errors"))
        row["cpu_vs_nginx"] = paired_ratio(samples[("https", name)], base, "cpu_us_per_request")
        https.append(row)
    return {"echo": echo, "https": https, "idle": idle_memory(table, idle_connections, ["--tls"])}, None


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


def labels(rows):
    """The distinct row labels, in order."""
    seen = []
    for row in rows:
        if row["row"] not in seen:
            seen.append(row["row"])
    return seen


def failed_note(row):
    return f" ({row['failed_rounds']} of {row['rounds']} rounds failed)" if row["failed_rounds"] else ""


def markdown(document):
    out = [f"# make bench, {document['date']}", "",
           f"{document['machine']}. Echo: 32-byte requests, closed loop, {document['seconds']:g} s per run, "
           f"median of {document['rounds']} interleaved rounds; CPU is the server's (and its children's) from /proc. "
           f"Every ratio in these tables is taken within a round (a server against its baseline, run minutes "
           f"apart at most) and the median of those is shown, so a ratio is not always the quotient of the two "
           f"medians beside it. Echo ratios: CPU per request against libevent's bufferevent echo server and against "
           f"the C epoll server. Memory is "
           f"PSS after the run.", ""]
    for label in labels(document["echo"]):
        out += [f"### {label}", "", "| server | requests/s | p50 us | p99 us | CPU us/request | CPU vs bufferevent | CPU vs epoll | memory MiB | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in document["echo"]:
            if row["row"] != label:
                continue
            out.append(f"| {row['server']}{failed_note(row)} | {fmt(row['requests_per_second'], '.0f')} | {fmt(row['p50_us'], '.0f')} | "
                       f"{fmt(row['p99_us'], '.0f')} | {fmt(row['cpu_us_per_request'], '.1f')} | "
                       f"{fmt(row['cpu_vs_bufferevent'], '.2f')} | {fmt(row.get('cpu_vs_epoll'), '.2f')} | "
                       f"{fmt(row['memory'] / 1048576 if row['memory'] else None, '.1f')} | {fmt(row['errors'], '.0f')} |")
        out.append("")
    if document["redis"]:
        out += ["### redis-benchmark -c 50: sockserv serve resp against redis-server", "",
                f"-n {REDIS_REQUESTS[1]} per test without pipelining, {REDIS_REQUESTS[16]} with -P 16. "
                "Requests/s for each test, then the server's CPU per request over all five. Ratio: sockserv's over "
                "redis-server's within each round, the median of the rounds.", "",
                "| pipeline | test | redis-server | sockserv resp | ratio |", "|---:|---|---:|---:|---:|"]
        for row in document["redis"]:
            out.append(f"| {row['pipeline']} | {row['test']} | {fmt(row['redis_server_rps'], '.1f')} | "
                       f"{fmt(row['sockserv_rps'], '.1f')} | {fmt(row['ratio'], '.2f')} |")
        out.append("")
    elif document.get("redis_skipped"):
        out += [f"redis: skipped, {document['redis_skipped']}", ""]
    if document.get("http"):
        out += ["### HTTP: wrk -t1 against each server, the same directory", "",
                "CPU is the server's; ratios are against nginx (one worker, sendfile on, access log off). System "
                "calls per request: `strace -c -f` on the server over one more keep-alive run (its own CPU "
                "is not measured). C thread per connection (`Benchmarks/baselines/http_threads.c`) is the "
                "threading model's floor: blocking I/O and the least a file server does per request.", ""]
        for label, *_ in HTTP_ROWS:
            out += [f"#### {label}", "",
                    "| server | requests/s | MiB/s | CPU us/request | CPU ms/MiB | CPU/request vs nginx | CPU/MiB vs nginx | requests/s vs nginx | system calls/request | errors |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for row in document["http"]:
                if row["row"] != label:
                    continue
                out.append(f"| {row['server']}{failed_note(row)} | {fmt(row['requests_per_second'], '.0f')} | "
                           f"{fmt(row['mib_per_second'], '.1f')} | {fmt(row['cpu_us_per_request'], '.1f')} | "
                           f"{fmt(row['cpu_ms_per_mib'], '.2f')} | {fmt(row['cpu_per_request_vs_nginx'], '.2f')} | "
                           f"{fmt(row['cpu_per_mib_vs_nginx'], '.2f')} | {fmt(row['requests_vs_nginx'], '.2f')} | "
                           f"{fmt(row.get('syscalls_per_request'), '.1f')} | {fmt(row['errors'], '.0f')} |")
            out.append("")
    elif document.get("http_skipped"):
        out += [f"http: skipped, {document['http_skipped']}", ""]
    tls = document.get("tls") or {}
    if tls.get("echo"):
        out += ["### TLS: sockserv against libevent's bufferevent_openssl echo server", "",
                "ECDSA P-256 certificate, TLS 1.3, 32-byte echo requests; echo_client --tls drives both. Echo rows "
                "read the server's CPU after every connection's handshake; the handshake row opens a new connection "
                "(a full handshake, one echo, close_notify) per request. Ratios are against the C server.", ""]
        for label in labels(tls["echo"]):
            out += [f"#### {label}", "", "| server | requests/s | p50 us | p99 us | CPU us/request | CPU vs C | rate vs C | errors |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for row in tls["echo"]:
                if row["row"] != label:
                    continue
                out.append(f"| {row['server']}{failed_note(row)} | {fmt(row['requests_per_second'], '.0f')} | {fmt(row['p50_us'], '.0f')} | "
                           f"{fmt(row['p99_us'], '.0f')} | {fmt(row['cpu_us_per_request'], '.1f')} | "
                           f"{fmt(row['cpu_vs_c'], '.2f')} | {fmt(row['rate_vs_c'], '.2f')} | {fmt(row['errors'], '.0f')} |")
            out.append("")
    if tls.get("https"):
        out += ["#### HTTPS: wrk -t1 -c100 over TLS, 1 KiB file, keep-alive", "",
                "| server | requests/s | CPU us/request | CPU/request vs nginx | errors |", "|---|---:|---:|---:|---:|"]
        for row in tls["https"]:
            out.append(f"| {row['server']}{failed_note(row)} | {fmt(row['requests_per_second'], '.0f')} | "
                       f"{fmt(row['cpu_us_per_request'], '.1f')} | {fmt(row['cpu_vs_nginx'], '.2f')} | {fmt(row['errors'], '.0f')} |")
        out.append("")
    if tls.get("idle"):
        out += idle_markdown("#### Memory per idle TLS connection (after its handshake)", tls["idle"])
    elif document.get("tls_skipped"):
        out += [f"tls: skipped, {document['tls_skipped']}", ""]
    if document["idle"]:
        out += idle_markdown("### Memory per idle connection", document["idle"])
    dates = document.get("dates", {})
    if document.get("mixed"):
        out += [f"### Mixed workload: 1 request in {MIXED_EVERY} blocks for 10 ms ({dates.get('mixed', document['date'])})", "",
                "sockserv serve resp driven by echo_client --mixed: PING, and every 100th request sent DEBUG SLEEP "
                "0.01 (a blocking call: its thread sleeps). Threading and forking block their own thread or child; "
                "reactor mode runs it on the loop (stalling every client of the loop) or on the loop's blocking pool "
                "(one thread per core by default, or 32: about 1 in 100 of 100,000 requests/s for 10 ms each keeps 10 "
                "threads busy). p99 is over all requests (the slow ones are 1%, so it sits at their edge); "
                "fast p99 over the PINGs only; ratios against threading within each round.", ""]
        for label, _ in MIXED_ROWS:
            out += [f"#### {label}", "",
                    "| server | requests/s | p50 us | p99 us | p999 us | fast p99 us | slow p50 us | CPU us/request | p99 vs threading | CPU vs threading | errors |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for row in document["mixed"]:
                if row["row"] != label:
                    continue
                out.append(f"| {row['server']}{failed_note(row)} | {fmt(row['requests_per_second'], '.0f')} | "
                           f"{fmt(row['p50_us'], '.0f')} | {fmt(row['p99_us'], '.0f')} | {fmt(row['p999_us'], '.0f')} | "
                           f"{fmt(row['fast_p99_us'], '.0f')} | {fmt(row['slow_p50_us'], '.0f')} | "
                           f"{fmt(row['cpu_us_per_request'], '.1f')} | {fmt(row['p99_vs_threading'], '.2f')} | "
                           f"{fmt(row['cpu_vs_threading'], '.2f')} | {fmt(row['errors'], '.0f')} |")
            out.append("")
    if document.get("loops"):
        out += [f"### Reactor on 1 and 2 loops ({dates.get('loops', document['date'])})", "",
                "Echo, 32-byte requests. sockserv --loops 2 is the library's LoopGroup: the main thread's loop "
                "accepts and hands each connection to the two loops in turn. bench-spread (Benchmarks/spread) "
                "spreads one port's connections over a LoopGroup either that way or with a SO_REUSEPORT listener "
                "per loop. The load generator shares the two cores with the server, so 2 loops cannot add "
                "throughput here; the column to read is CPU per request against one loop's (same round). "
                "Connections per loop: the server's own count, from its last round.", ""]
        for label, *_ in LOOP_ROWS:
            out += [f"#### {label}", "",
                    "| server | requests/s | p99 us | CPU us/request | CPU vs 1 loop | connections per loop | errors |",
                    "|---|---:|---:|---:|---:|---|---:|"]
            for row in document["loops"]:
                if row["row"] != label:
                    continue
                spread = " / ".join(str(n) for n in row["per_loop"]) if row.get("per_loop") else "-"
                out.append(f"| {row['server']}{failed_note(row)} | {fmt(row['requests_per_second'], '.0f')} | "
                           f"{fmt(row['p99_us'], '.0f')} | {fmt(row['cpu_us_per_request'], '.1f')} | "
                           f"{fmt(row['cpu_vs_one_loop'], '.2f')} | {spread} | {fmt(row['errors'], '.0f')} |")
            out.append("")
    if document.get("proxy"):
        proxy = document["proxy"]
        out += [f"### A TCP proxy in front of redis-server ({dates.get('proxy', document['date'])})", "",
                f"redis-benchmark -c 50 -n {PROXY_REQUESTS} -t get through each proxy to one redis-server; CPU is the "
                "proxy's (its children's included) over the run, against haproxy's in the same round. haproxy runs "
                "with nbthread 1 in mode tcp (Benchmarks/run.py writes its configuration).", "",
                "| proxy | requests/s | CPU us/request | CPU vs haproxy |", "|---|---:|---:|---:|"]
        for row in proxy["rows"]:
            out.append(f"| {row['server']}{failed_note(row)} | {fmt(row['requests_per_second'], '.0f')} | "
                       f"{fmt(row['cpu_us_per_request'], '.2f')} | {fmt(row['cpu_vs_haproxy'], '.2f')} |")
        out += ["", f"Idle pairs: clients held open through the proxy (each a client and an upstream connection, to a "
                "reactor echo server); memory is the proxy's PSS, descriptors its count while they are held.", "",
                "| proxy | clients held | pairs (descriptors / 2) | memory before MiB | while held MiB | bytes per pair |",
                "|---|---:|---:|---:|---:|---:|"]
        for row in proxy["idle"]:
            out.append(f"| {row['server']} | {row['connections']} | {row.get('pairs', '-')} | "
                       f"{row['memory_before'] / 1048576:.1f} | {row['memory_after'] / 1048576:.1f} | "
                       f"{fmt(row['bytes_per_pair'], '.0f')} |")
        out.append("")
    return "\n".join(out)


def idle_markdown(title, rows):
    out = [title, "", "| server | connections held | memory before MiB | after MiB | bytes per connection |",
           "|---|---:|---:|---:|---:|"]
    for row in rows:
        out.append(f"| {row['server']} | {row['connections']} | {row['memory_before'] / 1048576:.1f} | "
                   f"{row['memory_after'] / 1048576:.1f} | {fmt(row['bytes_per_connection'], '.0f')} |")
    return out + [""]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--idle", type=int, default=9000)
    parser.add_argument("--quick", action="store_true", help="three rows, one round, no redis, idle or http run")
    parser.add_argument("--only", choices=["echo", "redis", "idle", "http", "tls", "mixed", "loops", "proxy"],
                        help="one table only; the other tables of results/latest.json are kept")
    parser.add_argument("--tls-idle", type=int, default=2000)
    parser.add_argument("--proxy-idle", type=int, default=PROXY_IDLE)
    parser.add_argument("--http-seconds", type=float, default=3)
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    everything = {"echo", "redis", "idle", "http", "tls", "mixed", "loops", "proxy"}
    wanted = {args.only} if args.only else ({"echo"} if args.quick else everything)
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    document = {
        "date": now, "dates": {table: now for table in wanted},
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "rounds": rounds, "seconds": args.seconds,
        "echo": echo_table(rounds, args.seconds, args.quick) if "echo" in wanted else [],
        "redis": [], "idle": [], "http": [], "tls": {}, "mixed": [], "loops": [], "proxy": {},
    }
    latest = os.path.join(HERE, "results", "latest.json")
    if args.only and os.path.exists(latest):  # one table: the others stay as the last full run left them
        with open(latest) as f:
            previous = json.load(f)
        for key in ("date", "rounds", "seconds"):
            document[key] = previous.get(key, document[key])
        document["dates"] = previous.get("dates", {table: previous.get("date") for table in everything})
        document["dates"][args.only] = now
        for table in everything - wanted:
            document[table] = previous.get(table, document[table])
            for extra in (f"{table}_skipped",):
                if extra in previous:
                    document[extra] = previous[extra]
    if "mixed" in wanted:
        document["mixed"] = mixed_table(rounds, args.seconds)
    if "loops" in wanted:
        document["loops"] = loops_table(rounds, args.seconds)
    if "proxy" in wanted:
        document["proxy"], document["proxy_skipped"] = proxy_table(rounds, args.proxy_idle)
    if "redis" in wanted:
        document["redis"], document["redis_skipped"] = redis_table(rounds)
    if "idle" in wanted:
        document["idle"] = idle_table(args.idle)
    if "http" in wanted:
        document["http"], document["http_skipped"] = http_table(rounds, args.http_seconds)
    if "tls" in wanted:
        document["tls"], document["tls_skipped"] = tls_table(rounds, args.seconds, args.http_seconds, args.tls_idle)
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
