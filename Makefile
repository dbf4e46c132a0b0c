# The one place the project's commands live; CI runs `make check` (see .ci/run).
SWIFT ?= swift

.PHONY: all deps clients build release test lint format check check-sanitizers check-examples check-fuzz fuzz soak demo bench docs clean

all: build

# libevent-dev and libssl-dev provide the headers and pkg-config files; a fresh Debian machine has only
# the runtimes. The tests make their certificates with the openssl command.
deps:
	@if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists libevent_pthreads openssl \
		|| ! command -v openssl >/dev/null 2>&1; then \
		if [ "$$(id -u)" -ne 0 ]; then \
			echo "libevent-dev or libssl-dev is missing. Install them with:"; \
			echo "  sudo apt-get update && sudo apt-get install -y libevent-dev libssl-dev openssl pkg-config"; \
			exit 1; \
		fi; \
		apt-get update && apt-get install -y libevent-dev libssl-dev openssl pkg-config; \
	fi

# Real clients and tools for the end-to-end tests (redis-cli, redis-benchmark, curl, wrk; promtool from
# prometheus, which checks the metrics; systemd-socket-activate from systemd; strace, which counts a request's system
# calls); the tests skip, saying so, without them.
CLIENT_PACKAGES = redis-tools curl wrk prometheus systemd strace
clients:
	@if ! command -v redis-benchmark >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1 \
		|| ! command -v promtool >/dev/null 2>&1 || ! command -v systemd-socket-activate >/dev/null 2>&1 \
		|| ! command -v strace >/dev/null 2>&1; then \
		if [ "$$(id -u)" -eq 0 ]; then \
			apt-get install -y $(CLIENT_PACKAGES) || (apt-get update && apt-get install -y $(CLIENT_PACKAGES)) || true; \
		else \
			echo "note: without $(CLIENT_PACKAGES) some real-client tests are skipped (sudo apt-get install -y $(CLIENT_PACKAGES))"; \
		fi; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Serial: some tests count the process's descriptors or lower its RLIMIT_NOFILE.
test: deps
	$(SWIFT) test --no-parallel

# The style gate: swift-format (the toolchain's, configured by .swift-format: 120 columns) finds nothing,
# and .ci/house-rules holds (which module imports which, libevent only in the bridge and the loop, errno
# only in Posix, sockaddr only in SocketAddress). `make format` fixes what swift-format can.
FORMAT_PATHS = Sources Tests Examples Benchmarks/spread Benchmarks/nio-echo/Sources Benchmarks/hummingbird-files/Sources Fuzz Package.swift
lint:
	$(SWIFT) format lint --strict --recursive --parallel $(FORMAT_PATHS)
	.ci/house-rules

format:
	$(SWIFT) format format --in-place --recursive --parallel $(FORMAT_PATHS)

# What CI runs: the style gate, the tests, the docs (warnings are errors), the README's manifest and every Swift
# example of the README and the DocC articles compiled in a package of their own, each fuzzer for 30 s, and
# the tests again under AddressSanitizer and ThreadSanitizer.
check: deps clients lint build release test docs check-examples check-fuzz check-sanitizers

# The fuzzers in make check: half a minute each (make fuzz runs FUZZ_SECONDS, a minute by default).
check-fuzz:
	$(MAKE) fuzz FUZZ_SECONDS=30

# The README's "Use it in your package" manifest as written, a program importing each product it lists, and every
# ```swift block of README.md and the DocC articles as a program (stand-ins in Examples/Docs); also checks that such
# a package fetches none of the sockserv tool's dependencies. Builds in .build-examples (about a minute from scratch).
check-examples: deps
	.ci/check-examples

# The whole suite under each sanitizer, in its own build directory; the heavy tests run at a tenth of
# their load (SOCKETSERVER_TEST_LOAD), as the instrumented server is several times slower, and skip
# their memory bounds (SOCKETSERVER_SANITIZER: shadow memory and quarantine make RSS meaningless); the soak
# runs 3 s per mode.
# LeakSanitizer is on in the ASan pass: a test process or a server it started that leaks fails it; .ci/lsan.supp
# names the third-party leaks it suppresses and why. .ci/tsan.supp explains its suppressions (the
# Synchronization Mutex is invisible to ThreadSanitizer).
# The Swift runtime's crash backtracer is off here: ASan reports its reading of a trapping thread's stack,
# and the helper process it starts can outlive the test and hold its output pipe.
SANITIZER_ENV = SOCKETSERVER_TEST_LOAD=0.1 SOAK_SECONDS=3
check-sanitizers: deps clients
	$(SANITIZER_ENV) SOCKETSERVER_SANITIZER=address ASAN_OPTIONS=detect_leaks=1 \
		LSAN_OPTIONS="suppressions=$(CURDIR)/.ci/lsan.supp print_suppressions=0" SWIFT_BACKTRACE=enable=no \
		$(SWIFT) test --no-parallel --sanitize=address --scratch-path .build-asan
	$(SANITIZER_ENV) SOCKETSERVER_SANITIZER=thread TSAN_OPTIONS="suppressions=$(CURDIR)/.ci/tsan.supp halt_on_error=1" \
		SWIFT_BACKTRACE=enable=no \
		$(SWIFT) test --no-parallel --sanitize=thread --scratch-path .build-tsan

# libFuzzer on the RESP, HTTP, line and PROXY header parsers, FUZZ_SECONDS each (default 60), from the seed corpora
# in Fuzz/corpus. A crash leaves its input in Fuzz/crashes/ and fails; make it a regression test.
# (`-sanitize=fuzzer` would link libFuzzer's `main`, which collides with the one SwiftPM gives every
# executable: the same instrumentation is asked for by name and libFuzzer linked without its `main`.)
FUZZ_SECONDS ?= 60
FUZZERS = resp http lines proxy
FUZZER_LIB = $(firstword $(wildcard $(dir $(realpath $(shell command -v $(SWIFT))))../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a))
fuzz: deps
	@[ -n "$(FUZZER_LIB)" ] || { echo "libFuzzer (libclang_rt.fuzzer_no_main) not found next to $(SWIFT)"; exit 1; }
	for name in $(FUZZERS); do \
		SOCKETSERVER_FUZZ=1 $(SWIFT) build --product fuzz-$$name --scratch-path .build-fuzz \
			-Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp \
			-Xlinker $(FUZZER_LIB) -Xlinker -lstdc++ || exit 1; \
	done
	mkdir -p Fuzz/crashes
	for name in $(FUZZERS); do \
		mkdir -p .build-fuzz/corpus/$$name; \
		.build-fuzz/debug/fuzz-$$name -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=Fuzz/crashes/$$name- .build-fuzz/corpus/$$name Fuzz/corpus/$$name \
			> .build-fuzz/fuzz-$$name.log 2>&1; status=$$?; \
		grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|Done [0-9]+ runs|ERROR|SUMMARY" .build-fuzz/fuzz-$$name.log \
			| sed "s/^/fuzz-$$name: /"; \
		[ $$status -eq 0 ] || { tail -n 40 .build-fuzz/fuzz-$$name.log; exit 1; }; \
	done

# The long soak (60 s per mode) and 10,000 abrupt peers; make check runs 10 s and 2,000.
soak: deps build
	SOAK_SECONDS=60 SOCKSERV_ABRUPT_PEERS=10000 $(SWIFT) test --no-parallel --filter "SoakTests|ReliabilityTests"

# The main job: every concurrency mode side by side, about a minute and a half on two cores; then the mixed
# workload (1 request in 100 blocks for 10 ms): threading, forking, the reactor blocking its loop, and the reactor
# with a blocking pool; then a proxy workload (echo through sockserv serve proxy, in each mode, to an echo server).
demo: release
	.build/release/sockserv bench --connections 1,10,100,1000 --duration 2 --output bench-results
	.build/release/sockserv bench --protocol resp --mixed 100 --modes threading,forking,reactor,reactor-pool \
		--connections 10,100 --duration 2 --output bench-results/mixed
	.build/release/sockserv bench --protocol proxy --modes threading,forking,reactor \
		--connections 10,100 --duration 2 --output bench-results/proxy

# Side by side on this machine (about 20 minutes): sockserv in each mode, C libevent and epoll echo servers,
# SwiftNIO on one loop, Python's socketserver and asyncio; sockserv resp against redis-server; idle memory;
# sockserv serve http against nginx, Hummingbird 2 and Python's http.server under wrk; TLS against libevent's
# bufferevent_openssl echo server and nginx over HTTPS.
BENCH_DIR = .build/bench
bench: release
	mkdir -p $(BENCH_DIR)
	for name in echo_bufferevent echo_libevent echo_epoll echo_client echo_bufferevent_openssl; do \
		cc -O2 -Wall -o $(BENCH_DIR)/$$name Benchmarks/baselines/$$name.c \
			$$(pkg-config --cflags --libs libevent libevent_openssl openssl) || exit 1; \
	done
	cc -O2 -Wall -o $(BENCH_DIR)/http_threads Benchmarks/baselines/http_threads.c -lpthread
	@command -v redis-server >/dev/null 2>&1 || [ "$$(id -u)" -ne 0 ] || apt-get install -y redis-server redis-tools \
		|| echo "note: redis-server is missing, the redis rows are skipped"
	@if [ "$$(id -u)" -eq 0 ] && systemctl is-active --quiet redis-server 2>/dev/null; then systemctl stop redis-server; fi
	$(SWIFT) build -c release --package-path Benchmarks/nio-echo --scratch-path .build-nio \
		|| echo "note: the SwiftNIO baseline did not build, its rows are skipped"
	@for tool in nginx wrk strace; do command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || [ "$$(id -u)" -ne 0 ] \
		|| (printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
			&& apt-get install -y $$tool; rm -f /usr/sbin/policy-rc.d) \
		|| echo "note: $$tool is missing, the HTTP rows that need it are skipped"; done
	$(SWIFT) build -c release --package-path Benchmarks/hummingbird-files --scratch-path .build-hummingbird \
		|| echo "note: the Hummingbird baseline did not build, its rows are skipped"
	python3 Benchmarks/run.py $(BENCH_ARGS)

# DocC for Reactor, SocketServer and SocketServerHTTP (swift-docc-plugin), warnings as errors; HTML under .build/docs/.
docs: deps
	mkdir -p .build/docs
	for target in Reactor SocketServer SocketServerHTTP; do \
		$(SWIFT) package --allow-writing-to-directory .build/docs generate-documentation --target $$target \
			--warnings-as-errors --output-path .build/docs/$$target || exit 1; \
	done
	@echo "archives in .build/docs/; browse one with: swift package --disable-sandbox preview-documentation --target SocketServer"

clean:
	rm -rf .build .build-asan .build-tsan .build-fuzz
