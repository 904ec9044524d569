#!/usr/bin/env bash
# Installs the Debian 12 packages aaax needs, if any is missing (run as root).
# Build: compiler, cmake, pkg-config and the six libraries of DESIGN.md plus
# jansson (JSON in the CLI). Tests: pyzmq, msgpack and pytest from Debian
# (PyPI is not used), clang with its runtimes for the fuzzers.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libzmq3-dev libczmq-dev libmsgpack-dev liblmdb-dev liblua5.4-dev
      libsodium-dev libjansson-dev
      python3 python3-zmq python3-msgpack python3-pytest
      clang libclang-rt-14-dev clang-format git)
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
