#!/usr/bin/env bash
# Builds jitrca twice (normal, and AddressSanitizer + UndefinedBehaviorSanitizer) from this
# checkout and runs every test in both. The sanitizer build runs the large tests at a smaller
# size (ctest label "slow", JITRCA_TEST_SCALE=small). The long soak (label "soak", 15 minutes)
# is left out: `cd build && ctest -L soak`. The Debian package test (label "package": builds,
# installs and purges the .deb) runs in the normal build only. Installs missing Debian packages
# first.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/deps.sh
jobs=$(nproc)
build() { # build DIR CMAKE_ARGS...
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJITRCA_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs" >/dev/null
}
echo "== normal build"
build build
(cd build && ctest -j "$jobs" --output-on-failure --timeout 1800 -LE '^soak$')
echo "== sanitizer build (ASan + UBSan)"
build build-asan -DJITRCA_SANITIZE=ON -DJITRCA_TEST_SCALE=small -DCMAKE_BUILD_TYPE=Debug
# the stand-ins' own Python self-tests (sim.*), the CloudFormation check (deploy.cfn) and the
# package (a Release build of its own) ran in the normal build: nothing of ours to sanitize
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -j "$jobs" --output-on-failure --timeout 1800 \
  -E '^(sim|deploy)[.]' -LE '^(soak|package)$')
echo "== all tests passed in both builds"
