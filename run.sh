#!/usr/bin/env bash
# Installs what is missing, builds, and runs aaaxd with its embedded defaults
# (data in ./aaax-data, commands on tcp://127.0.0.1:5670, tap on :5671).
# Extra arguments go to aaaxd (see ./build/aaaxd --help). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec ./build/aaaxd "$@"
