#!/usr/bin/env bash
# Builds and runs the whole test suite: unit tests, integration tests in C and
# Python against a real aaaxd, the kill -9 crash test — once in a normal
# build and once under AddressSanitizer + UndefinedBehaviorSanitizer — then
# every fuzz target for a bounded time. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/deps.sh
jobs=$(nproc)
fuzz_seconds=${AAAX_FUZZ_SECONDS:-45}

echo "== format (clang-format, .clang-format)"
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror

echo "== build (warnings are errors)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
passed=0
count_ctest () { # adds the tests of the ctest summary in $1 to $passed
    local n
    n=$(grep -Eo "[0-9]+ tests failed out of [0-9]+" "$1" | tail -1 | awk '{print $NF}')
    passed=$((passed + ${n:-0}))
}
log=$(mktemp)
echo "== tests"
ctest --test-dir build --output-on-failure | tee "$log"
count_ctest "$log"

echo "== build with ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DAAAX_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests under ASan + UBSan"
# A small quarantine: ASan's default keeps 256 MiB of freed memory, which the
# memory-bound tests (a slow subscriber must not grow the kernel) would see.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=16 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure | tee "$log"
count_ctest "$log"
rm -f "$log"

echo "== fuzz targets, ${fuzz_seconds}s each"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DAAAX_FUZZ=ON \
    -DAAAX_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j"$jobs"
for f in build-fuzz/tests/fuzz_*; do
    name=$(basename "$f"); name=${name#fuzz_}
    corpus=$(mktemp -d)
    cp -r tests/fuzz/corpus/"$name"/. "$corpus"/ 2>/dev/null || true
    log=$(mktemp)
    echo "-- fuzz_$name"
    status=0
    "$f" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus" \
        >"$log" 2>&1 || status=$?
    grep -E "^(stat::number_of_executed_units|Done|==[0-9]+==ERROR|SUMMARY)" \
        "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -50 "$log"
        echo "fuzz_$name failed (status $status)"
        exit 1
    fi
    rm -rf "$corpus" "$log"
    passed=$((passed + 1))
done
echo "== all tests passed (ctest entries twice, normal and sanitized, and each fuzzer)"
echo "suite: $passed passed, 0 failed"
