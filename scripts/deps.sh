#!/usr/bin/env bash
# Installs the Debian 12 packages aaax needs, if any is missing (run as root).
# Build: compiler, cmake, pkg-config and the six libraries of DESIGN.md plus
# jansson (JSON in the CLI). Tests: pyzmq, msgpack and pytest from Debian
# (PyPI is not used), clang with its runtimes for the fuzzers.
# --bench adds the side-by-side benchmark's peers (bench/README.md).
set -euo pipefail
usage () {
    cat <<'EOF'
usage: scripts/deps.sh [--bench] [--help]
Installs the Debian 12 packages aaax needs to build and test, if any is
missing (apt-get; run as root when something must be installed).
  --bench  also what bench/aaax_vs and bench/aaax_peers need: nats-server,
           redis-server, libhiredis-dev (hiredis), gnuplot-nox (the chart)
  --help   this text
EOF
}
bench=0
for arg in "$@"; do
    case "$arg" in
        --bench) bench=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "deps: unknown option $arg" >&2; usage >&2; exit 2 ;;
    esac
done
pkgs=(build-essential cmake pkg-config
      libzmq3-dev libczmq-dev libmsgpack-dev liblmdb-dev liblua5.4-dev
      libsodium-dev libjansson-dev
      python3 python3-zmq python3-msgpack python3-pytest
      clang libclang-rt-14-dev clang-format git)
if [ "$bench" -eq 1 ]; then
    pkgs+=(nats-server redis-server libhiredis-dev gnuplot-nox)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: run as root (or install the packages above yourself)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
