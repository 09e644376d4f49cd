#!/usr/bin/env bash
# Builds a free-threaded CPython (--disable-gil --enable-shared) from Debian's
# source package into a cache prefix outside the repository. Idempotent: when
# the prefix already holds a working free-threaded build, it exits at once.
# It is embedded in the slither command (package internal/pybuild) and run by
# `slither python install`, which is what `make python` calls.
#
# Inputs (environment):
#   PY_VERSION             major.minor, e.g. 3.13 (Debian source package python$PY_VERSION)
#   PREFIX                 install prefix (slither python install passes --prefix / SLITHER_PYTHON_PREFIX)
#   DEBIAN_SUITE           suite that carries the source package (default trixie)
#   SLITHER_PYTHON         an existing free-threaded python to use instead (checked, not built)
set -euo pipefail

PY_VERSION=${PY_VERSION:-3.13}
PREFIX=${PREFIX:?PREFIX is required}
DEBIAN_SUITE=${DEBIAN_SUITE:-trixie}
JOBS=${JOBS:-$(nproc)}

log() { printf 'build-python: %s\n' "$*" >&2; }

is_free_threaded() { # $1 = interpreter
  "$1" -c 'import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("Py_GIL_DISABLED") else 1)' 2>/dev/null
}

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# ensure_packages installs the Debian packages among "$@" that are missing.
ensure_packages() {
  local missing="" p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    log "installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
}

# cgo needs a C compiler and pkg-config even when the build is cached.
# Packages only this repository's own tests and examples need (Debian's GIL
# python3 with scikit-learn and Pillow, venv and setuptools, Chromium for the
# dashboard's browser test) come only when
# the Makefile asks (SLITHER_TEST_DEPS=1), never on a user's machine.
if command -v dpkg-query >/dev/null 2>&1; then
  ensure_packages gcc pkg-config
  if [ "${SLITHER_TEST_DEPS:-}" = 1 ]; then
    ensure_packages python3 python3-numpy python3-sklearn python3-pil python3-venv python3-setuptools chromium
  fi
else
  log "not a Debian system: not installing packages (cgo needs gcc and pkg-config)"
fi

if [ -n "${SLITHER_PYTHON:-}" ]; then
  if [ ! -x "$SLITHER_PYTHON" ]; then
    log "SLITHER_PYTHON=$SLITHER_PYTHON is not an executable file"; exit 2
  fi
  if ! is_free_threaded "$SLITHER_PYTHON"; then
    log "SLITHER_PYTHON=$SLITHER_PYTHON is not a free-threaded build (Py_GIL_DISABLED is not set)"; exit 2
  fi
  log "using SLITHER_PYTHON=$SLITHER_PYTHON"
  exit 0
fi

PY="$PREFIX/bin/python${PY_VERSION}t"
if [ -x "$PY" ] && is_free_threaded "$PY" && [ -f "$PREFIX/lib/pkgconfig/python-${PY_VERSION}t-embed.pc" ]; then
  exit 0 # already built
fi

# Build dependencies, from Debian's packages.
ensure_packages build-essential pkg-config dpkg-dev xz-utils libffi-dev libssl-dev zlib1g-dev \
  libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev uuid-dev libncurses-dev libexpat1-dev libgdbm-dev

WORK=$(mktemp -d "${TMPDIR:-/tmp}/slither-cpython.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# A temporary deb-src list pointing at the machine's own Debian mirror (read from
# the apt configuration, never written into the repository), for DEBIAN_SUITE.
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  m=$(awk 'BEGIN{IGNORECASE=1} /^URIs:/{for(i=2;i<=NF;i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' "$f")
  [ -n "$m" ] && { mirror=$m; break; }
done
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1=="deb" || $1=="deb-src" {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) {print $i; exit}}' | head -n1)
fi
if [ -z "$mirror" ]; then
  log "no Debian mirror found in the apt configuration"; exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
mkdir -p "$WORK/lists/partial" "$WORK/src"
echo "deb-src [signed-by=$keyring] $mirror $DEBIAN_SUITE main" >"$WORK/sources.list"
APT_OPTS=(-o "Dir::Etc::SourceList=$WORK/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$WORK/lists" -o "APT::Sandbox::User=root")
log "fetching python$PY_VERSION source from Debian $DEBIAN_SUITE"
apt-get "${APT_OPTS[@]}" update -qq
(cd "$WORK/src" && apt-get "${APT_OPTS[@]}" source --download-only -qq "python$PY_VERSION")

orig=$(ls "$WORK"/src/python"$PY_VERSION"_*.orig.tar.* | head -n1)
tar -C "$WORK/src" -xf "$orig"
srcdir=$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d -name 'Python-*' | head -n1)
log "building $(basename "$srcdir") free-threaded into $PREFIX (make -j$JOBS)"
cd "$srcdir"
./configure --prefix="$PREFIX" --disable-gil --enable-shared --with-ensurepip=no \
  --disable-test-modules LDFLAGS="-Wl,-rpath,$PREFIX/lib" >"$WORK/configure.log" 2>&1 ||
  { tail -n 40 "$WORK/configure.log" >&2; exit 1; }
make -j"$JOBS" >"$WORK/make.log" 2>&1 || { tail -n 60 "$WORK/make.log" >&2; exit 1; }
# Replace only what an earlier run of this script installed (it leaves a
# marker): a prefix such as /usr/local or $HOME is never wiped.
MARKER="$PREFIX/.slither-cpython"
if [ -e "$PREFIX" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ]; then
  if [ -f "$MARKER" ]; then
    rm -rf "$PREFIX"
  else
    log "$PREFIX exists and was not made by slither python install: choose an empty or new prefix"; exit 2
  fi
fi
make install >"$WORK/install.log" 2>&1 || { tail -n 40 "$WORK/install.log" >&2; exit 1; }

if ! is_free_threaded "$PY"; then
  log "$PY was installed but is not a free-threaded build"; exit 1
fi
echo "CPython $PY_VERSION free-threaded, built by slither python install" >"$MARKER"
log "done: $("$PY" -VV)"
