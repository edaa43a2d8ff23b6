#!/usr/bin/env bash
# Builds jitrd and jitrctl (and every library they link) from this source tree as a user or a
# packager does: a fresh build directory, CMAKE_BUILD_TYPE=TYPE (Release by default), compiler CC,
# with JITRCA_WERROR=ON so that any warning fails the test. No tests are built: only what users
# install. Usage: release.sh CC [TYPE]
set -euo pipefail
cc=$1 type=${2:-Release}
src=${JITRCA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v "$cc" >/dev/null || { echo "build: compiler '$cc' is not installed (scripts/deps.sh installs it)" >&2; exit 1; }
d=$(mktemp -d "${TMPDIR:-/tmp}/jitrca-build-$cc.XXXXXX")
trap 'rm -rf "$d"' EXIT
if ! CC=$cc cmake -S "$src" -B "$d" -DCMAKE_BUILD_TYPE="$type" -DJITRCA_WERROR=ON \
    >"$d/configure.log" 2>&1; then
  cat "$d/configure.log" >&2
  exit 1
fi
start=$(date +%s)
if ! cmake --build "$d" -j2 --target jitrd jitrctl >"$d/build.log" 2>&1; then
  grep -E -B2 -A6 "(warning|error):" "$d/build.log" >&2 || tail -50 "$d/build.log" >&2
  echo "build: $cc $type failed" >&2
  exit 1
fi
# -Werror turns compiler warnings into errors; anything else that warns (the linker) fails too
if grep -E "warning:" "$d/build.log" >&2; then
  echo "build: $cc $type built with warnings" >&2
  exit 1
fi
echo "build: $cc $type: jitrd and jitrctl without warnings in $(( $(date +%s) - start )) s"
