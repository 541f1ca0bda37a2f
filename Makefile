# Entry points. `make run` and `make test` work on a fresh Debian 12 machine:
# they install the missing Debian packages (apt-get, sudo when not root),
# build, and drive scripts/stack.sh, which does the real work.
.PHONY: all deps build run start stop status test populate clean distclean format asan test-asan screenshots install bench callgrind

SHELL := /bin/bash
# The instance to act on: etc/profile.ini (dev, var/) or etc/test.ini (var/test/).
CONFIG ?= etc/profile.ini
# Users for `make populate` (empty: [stack] users of CONFIG, 10,000,000 for dev).
N ?=
STACK := scripts/stack.sh --config $(CONFIG)
FORMAT_FILES = $(shell find src tests tools -name '*.[ch]' 2>/dev/null)

all: build

deps:
	scripts/stack.sh deps

build: deps
	scripts/stack.sh build

# Everything in the foreground; Ctrl-C stops it all.
run: build
	$(STACK) run

# The same in the background; `make stop` ends every process it started.
start: build
	$(STACK) start

stop:
	$(STACK) stop

status:
	$(STACK) status

# Unit and integration tests against a private test instance (etc/test.ini),
# which is started before and stopped after, also on failure.
test: build
	scripts/stack.sh test

# Copies the page screenshots of the last browser test run (make test writes
# them to build/e2e-artifacts/screenshots) to docs/screenshots for the README.
SCREENSHOTS = login login-error login-expired profile edit edit-error
screenshots:
	@test -d build/e2e-artifacts/screenshots || { echo "no screenshots yet: run make test first" >&2; exit 1; }
	mkdir -p docs/screenshots
	for p in $(SCREENSHOTS); do for w in phone desktop; do \
	  cp build/e2e-artifacts/screenshots/$$p-$$w.png docs/screenshots/ || exit 1; done; done

# Production install on this host (deploy/install.sh --help): binaries,
# /etc/profile/, systemd units, nginx site, logrotate, data directories.
# INSTALL_ARGS="--destdir /tmp/stage" stages it into a directory instead.
INSTALL_ARGS ?=
install: build
	deploy/install.sh $(INSTALL_ARGS)

# (Re)load N users (idempotent: the same N twice does nothing).
populate: build
	$(STACK) mysql-start
	$(STACK) populate $(N)

# The benchmark of issue 3 against the running system (`make start` first,
# same CONFIG and PROFILE_* overrides): all scenarios, results under
# bench/results/<timestamp>/, docs/performance.md and its charts regenerated.
# BENCH_QUICK=1 for a short development run; settings in bench/run.sh.
bench: deps
	CONFIG=$(CONFIG) bench/run.sh

# Instructions per request of the web and the core under valgrind's callgrind
# (a second pair beside the running system; repeatable on a noisy machine).
callgrind: build
	CONFIG=$(CONFIG) bench/callgrind.sh

clean:
	rm -rf build build-asan

# Also removes the private databases, logs and pictures of both
# instances (stops them first).
distclean: clean
	-scripts/stack.sh --config etc/test.ini stop
	-scripts/stack.sh --config etc/profile.ini stop
	rm -rf var

format:
	clang-format -i $(FORMAT_FILES)

# AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/.
asan: deps
	cmake -S . -B build-asan -G "Unix Makefiles" -DPROFILE_SANITIZE=ON >/dev/null
	$(MAKE) -C build-asan -j$$(nproc)

# The whole test suite against the sanitizer build of every program.
test-asan: asan
	PROFILE_BUILD_DIR=build-asan scripts/stack.sh test
