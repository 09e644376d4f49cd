# Slither for Go. The two commands that matter:
#   make demo   builds (or finds) the free-threaded Python, then runs the five examples
#   make test   builds (or finds) it, then vets and tests everything under -race
#
# The free-threaded CPython lives in a cache outside the repository, built once
# from Debian's source package by `slither python install` (the same command a
# user runs from their own module; its script is internal/pybuild/build-python.sh):
#   PY_VERSION=3.13                     the CPython version (3.14 builds the same way
#                                       where Debian's source package can be fetched)
#   SLITHER_PYTHON_PREFIX=DIR           where it is built (default below)
#   SLITHER_PYTHON=/path/to/python3.13t use an existing free-threaded build instead

PY_VERSION ?= 3.13
SLITHER_PYTHON_PREFIX ?= $(HOME)/.cache/slither/cpython-$(PY_VERSION)t
SLITHER_PYTHON ?=

ifneq ($(SLITHER_PYTHON),)
PYTHON := $(SLITHER_PYTHON)
PY_LIBPC := $(shell $(SLITHER_PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBPC"))' 2>/dev/null)
PY_LIBDIR := $(shell $(SLITHER_PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))' 2>/dev/null)
else
PYTHON := $(SLITHER_PYTHON_PREFIX)/bin/python$(PY_VERSION)t
PY_LIBPC := $(SLITHER_PYTHON_PREFIX)/lib/pkgconfig
PY_LIBDIR := $(SLITHER_PYTHON_PREFIX)/lib
endif

# cgo finds the headers and libpython through pkg-config (cpython/ asks for
# python3-embed); the rpath lets the built binaries and test binaries load
# that libpython with no LD_LIBRARY_PATH.
export PKG_CONFIG_PATH := $(PY_LIBPC)$(if $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH))
export CGO_LDFLAGS := -Wl,-rpath,$(PY_LIBDIR) $(CGO_LDFLAGS)
export CGO_ENABLED := 1
# The process pool's tests run their workers on the same free-threaded build.
export SLITHER_TEST_PYTHON := $(PYTHON)
export PATH := $(PATH):/usr/local/go/bin

GO ?= go
BIN := bin

.PHONY: all python build demo test vet nocgo fmt-check bench fuzz chaos doctor env clean

all: build

# The CLI's python commands build without cgo, so they run before the
# free-threaded Python exists.
SLITHER_NOCGO := CGO_ENABLED=0 $(GO) run ./cmd/slither
PYTHON_FLAGS = --py-version "$(PY_VERSION)" --prefix "$(SLITHER_PYTHON_PREFIX)" --python "$(SLITHER_PYTHON)"

# Idempotent: a second run checks the cached build and returns at once.
# SLITHER_TEST_DEPS=1: also the Debian packages this repository's tests and
# examples use (a user's `slither python install` never installs them).
python:
	@SLITHER_TEST_DEPS=1 $(SLITHER_NOCGO) python install $(PYTHON_FLAGS)

build: python
	$(GO) build -o $(BIN)/slither ./cmd/slither

demo: build
	$(BIN)/slither example --all

doctor: build
	$(BIN)/slither doctor

vet: python
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needs to run on:"; echo "$$out"; exit 1; fi

# Without cgo the module must still build (process pools only).
nocgo:
	CGO_ENABLED=0 $(GO) build ./...
	CGO_ENABLED=0 $(GO) vet ./...

test: python fmt-check vet nocgo
	$(GO) test -race -count=1 -timeout 15m ./...

# Explores every fuzz target for FUZZTIME each (make test runs their seed
# corpora only): make fuzz FUZZTIME=2m
FUZZTIME ?= 30s
fuzz: python
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# The long chaos run: kill -9 random process workers during a dispatch with
# Retry for CHAOS_DURATION (CHAOS_KILLS kills at most), then kill -9 the Go
# process and look for survivors. make test runs a short one.
CHAOS_DURATION ?= 60s
CHAOS_KILLS ?= 120
chaos: python
	SLITHER_CHAOS_DURATION=$(CHAOS_DURATION) SLITHER_CHAOS_KILLS=$(CHAOS_KILLS) \
		$(GO) test -race -count=1 -timeout 30m -run 'TestChaos|TestNoOrphans' -v ./pools/process/

# The pool benchmarks quoted in the README.
bench: python
	$(GO) test -run '^$$' -bench . -benchtime 2s ./pools/thread/ ./pools/process/

# Prints the environment cgo needs, for running go by hand:
#   eval "$$(make -s env)"
env:
	@$(SLITHER_NOCGO) python env $(PYTHON_FLAGS)

clean:
	rm -rf $(BIN)
