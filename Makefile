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

# Side by side on this machine: the Reactor against libevent's own bufferevent echo server (C, -O2).
BENCH_BIN = .build/release
bench: release
	cc -O2 -o $(BENCH_BIN)/echo_bufferevent Benchmarks/baselines/echo_bufferevent.c $$(pkg-config --cflags --libs libevent)
	cc -O2 -o $(BENCH_BIN)/echo_client Benchmarks/baselines/echo_client.c
	python3 Benchmarks/reactor_vs_libevent.py $(BENCH_BIN)

clean:
	rm -rf .build
