# The one place the project's commands live; CI runs `make check` (see .ci/run).
SWIFT ?= swift

.PHONY: all deps build release test check bench clean

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

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Serial: some tests count the process's descriptors or lower its RLIMIT_NOFILE.
test: deps
	$(SWIFT) test --no-parallel

check: deps build test

# Side by side on this machine: the Reactor against libevent's own bufferevent echo server (C, -O2).
BENCH_BIN = .build/release
bench: release
	cc -O2 -o $(BENCH_BIN)/echo_bufferevent Benchmarks/baselines/echo_bufferevent.c $$(pkg-config --cflags --libs libevent)
	cc -O2 -o $(BENCH_BIN)/echo_client Benchmarks/baselines/echo_client.c
	python3 Benchmarks/reactor_vs_libevent.py $(BENCH_BIN)

clean:
	rm -rf .build
