# The one place the project's commands live; CI runs `make check` (see .ci/run).
SWIFT ?= swift

.PHONY: all deps clients build release test check demo bench clean

all: build

# libevent-dev provides the headers and pkg-config files; a fresh Debian machine has only the runtime.
deps:
	@if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists libevent_pthreads; then \
		if [ "$$(id -u)" -ne 0 ]; then \
			echo "libevent-dev is missing. Install it with:"; \
			echo "  sudo apt-get update && sudo apt-get install -y libevent-dev pkg-config"; \
			exit 1; \
		fi; \
		apt-get update && apt-get install -y libevent-dev pkg-config; \
	fi

# Real clients for the end-to-end tests (redis-cli, redis-benchmark, curl); the tests skip, saying so, without them.
clients:
	@if ! command -v redis-benchmark >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then \
		if [ "$$(id -u)" -eq 0 ]; then \
			apt-get install -y redis-tools curl || (apt-get update && apt-get install -y redis-tools curl) || true; \
		else \
			echo "note: without redis-tools and curl the real-client tests are skipped (sudo apt-get install -y redis-tools curl)"; \
		fi; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Serial: some tests count the process's descriptors or lower its RLIMIT_NOFILE.
test: deps
	$(SWIFT) test --no-parallel

check: deps clients build test

# The main job: every concurrency mode side by side, about a minute on two cores.
demo: release
	.build/release/sockserv bench --connections 1,10,100,1000 --duration 2 --output bench-results

# Side by side on this machine (about 10 minutes): sockserv in each mode, C libevent and epoll echo servers,
# SwiftNIO on one loop, Python's socketserver and asyncio; sockserv resp against redis-server; idle memory.
BENCH_DIR = .build/bench
bench: release
	mkdir -p $(BENCH_DIR)
	for name in echo_bufferevent echo_libevent echo_epoll echo_client; do \
		cc -O2 -Wall -o $(BENCH_DIR)/$$name Benchmarks/baselines/$$name.c $$(pkg-config --cflags --libs libevent) || exit 1; \
	done
	@command -v redis-server >/dev/null 2>&1 || [ "$$(id -u)" -ne 0 ] || apt-get install -y redis-server redis-tools \
		|| echo "note: redis-server is missing, the redis rows are skipped"
	@if [ "$$(id -u)" -eq 0 ] && systemctl is-active --quiet redis-server 2>/dev/null; then systemctl stop redis-server; fi
	$(SWIFT) build -c release --package-path Benchmarks/nio-echo --scratch-path .build-nio \
		|| echo "note: the SwiftNIO baseline did not build, its rows are skipped"
	python3 Benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf .build
