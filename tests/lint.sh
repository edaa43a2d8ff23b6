#!/usr/bin/env bash
# Source checks (docs/style.md, "Source checks"), run by ctest: banned functions, raw allocation
# outside core/mem.c, and the layering rule that matters most: ca/ and policies/ never include
# network headers, core/ includes no other module.
set -uo pipefail
cd "${JITRCA_SOURCE_DIR:-$(dirname "$0")/..}"
bad=0
report() { echo "lint: $*"; bad=1; }
src=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
prod=$(echo "$src" | grep -E '^(core|ca|audit|store|issuance|aws|jobs|httpd|daemon|cli|jitr)/')
banned='\b(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|atof|rand|srand|gmtime|localtime|strerror|asctime|ctime|tmpnam|mktemp|system|popen|alloca|signal)\s*\('
for f in $prod; do
  grep -nP "$banned" "$f" | grep -vP '^\d+:\s*(/?\*|//)' | grep -v 'lint: allow' | while read -r l; do report "$f:$l: banned function"; done
  if [ "$f" != core/mem.c ]; then
    grep -nP '(?<![a-z_.>])(malloc|calloc|realloc|strdup|free)\s*\(' "$f" |
      grep -vP '^\d+:\s*(/?\*|//)' | grep -v 'lint: allow' |
      while read -r l; do echo "lint: $f:$l: raw allocation (use core/mem.h)"; done
  fi
done > /tmp/jitrca-lint.$$ 2>&1
if [ -s /tmp/jitrca-lint.$$ ]; then cat /tmp/jitrca-lint.$$; bad=1; fi
rm -f /tmp/jitrca-lint.$$
for f in $(echo "$src" | grep -E '^(ca|policies)/'); do
  if grep -nE '#include [<"](event2/|hiredis/|curl/|store/|aws/|httpd/|daemon/|jitr/|issuance/|audit/)' "$f"; then
    report "$f: ca/ and policies/ must not include network or I/O modules"
  fi
done
for f in $(echo "$src" | grep -E '^core/'); do
  if grep -nE '#include [<"](event2/|hiredis/|curl/|ca/|store/|aws/|httpd/|daemon/|jitr/|issuance/|audit/)' "$f"; then
    report "$f: core/ includes no other module"
  fi
done
# Redis's wire format belongs to store/: only its two clients include hiredis (store/record.c, the
# index's formats, is pure and unit tested without a server).
for f in $(echo "$prod" | grep -vE '^store/(store|async)\.c$'); do
  if grep -nE '#include [<"]hiredis/' "$f"; then
    report "$f: only store/store.c and store/async.c include hiredis"
  fi
done
# jitrd's worker process sees the routes only through daemon/api.h: the jobs' internals
# (daemon/job.h) never reach back into worker.c, so the two do not call each other.
if grep -nE '#include "daemon/job\.h"' daemon/worker.c daemon/main.c 2>/dev/null; then
  report "daemon/worker.c and daemon/main.c include daemon/api.h, not daemon/job.h"
fi
if grep -rnE '^\s*//' $prod | grep -v 'http://\|https://' | head -5 | grep -q .; then
  grep -rnE '^\s*//' $prod | head -5
  report "// comments (use /* */)"
fi
# The repository stands alone: no file cites the design notes the project started from (they are
# not part of it; docs/ carries what the code relies on, in its own words) or a path into the
# directory outside the repository that held them. Tracked files and new ones not yet added
# (ignored files excepted); binary files are skipped.
notes='(^|[^A-Za-z0-9_-])(STYLE|AWS-IOT|DESIGN|PERF-NOTES)\.md|\.\./shared'
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  cited=$(git ls-files -z --cached --others --exclude-standard -- . ':!tests/lint.sh' |
    xargs -0 grep -nsIE -- "$notes" /dev/null)
else
  cited=$(find . -type f -not -path './build*' -not -path './.git/*' -not -path ./tests/lint.sh \
    -exec grep -nsIE -- "$notes" /dev/null {} +)
fi
if [ -n "$cited" ]; then
  echo "$cited" | sed 's/^/lint: /'
  report "files outside the repository cited above (cite docs/, see docs/style.md, \"Comments\")"
fi
[ $bad -eq 0 ] && echo "lint: ok ($(echo "$prod" | wc -l) files)"
exit $bad
