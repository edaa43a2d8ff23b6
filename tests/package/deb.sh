#!/usr/bin/env bash
# The Debian package, end to end, on this machine (as root: it installs into /usr, /etc and
# /var/lib): builds jitrca_*.deb from a copy of the source tree in a temporary directory with
# `dpkg-buildpackage -us -uc -b`, checks the hardening of the binaries and lintian (no errors),
# installs it with dpkg -i, makes a CA with the installed jitrctl as the jitrca user, runs the
# installed jitrd under the unit's restrictions that this machine allows (docs/operations.md,
# "Install"), signs a certificate through it, removes and purges the package, and checks that
# /var/lib/jitrca (CA keys, audit log) survived both untouched.
#
# It refuses to run where jitrca is installed or /etc/jitrca or /var/lib/jitrca exist (a real
# installation is never touched), and undoes everything it did at the end.
set -euo pipefail
src=${JITRCA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the package test installs into /usr and /var/lib: run it as root (CI does)" >&2
  exit 77
fi
for c in dpkg-buildpackage dh lintian systemd-sysusers redis-server openssl curl unshare setpriv; do
  command -v "$c" >/dev/null || { echo "package: '$c' is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
if dpkg-query -W -f='${Status}' jitrca 2>/dev/null | grep -q "ok installed"; then
  echo "package: jitrca is installed on this machine; the test installs and purges its own" >&2
  exit 1
fi
for d in /etc/jitrca /var/lib/jitrca; do
  [ ! -e "$d" ] || { echo "package: $d exists (an installation?): refusing to touch it" >&2; exit 1; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/jitrca-pkg-XXXXXX")
chmod 755 "$T"
had_user=0
getent passwd jitrca >/dev/null && had_user=1
JPID= RPID=
PASSED=0 FAILED=0
fail() { echo "FAIL: $*" >&2; FAILED=$((FAILED + 1)); }
pass() { PASSED=$((PASSED + 1)); }
check() { # check WHAT CMD...: CMD must succeed
  local what=$1; shift
  if "$@" >"$T/out" 2>&1; then pass; else fail "$what: $*"; sed 's/^/  /' "$T/out" | tail -20 >&2; fi
}
check_not() { # check_not WHAT CMD...: CMD must fail
  local what=$1; shift
  if "$@" >"$T/out" 2>&1; then fail "$what (it succeeded): $*"; else pass; fi
}
cleanup() {
  local rc=$?
  if [ -n "$JPID" ]; then kill -TERM "$JPID" 2>/dev/null || true; wait "$JPID" 2>/dev/null || true; fi
  if [ -n "$RPID" ]; then kill -TERM "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; fi
  dpkg --purge jitrca >/dev/null 2>&1 || true
  rm -rf /etc/jitrca /var/lib/jitrca
  if [ "$had_user" = 0 ] && getent passwd jitrca >/dev/null; then
    userdel jitrca 2>/dev/null || true
    groupdel jitrca 2>/dev/null || true
  fi
  if [ $rc -ne 0 ] && [ "${TT_KEEP:-}" = 1 ]; then echo "test files kept in $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

# --- build ---------------------------------------------------------------------------------
mkdir "$T/src"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$T/src")
else
  tar -C "$src" --exclude='./build*' --exclude=./.git -cf - . | tar -C "$T/src" -xf -
fi
start=$(date +%s)
if ! (cd "$T/src" && DEB_BUILD_OPTIONS="parallel=2 noautodbgsym ${DEB_BUILD_OPTIONS:-}" \
      dpkg-buildpackage -us -uc -b >"$T/build.log" 2>&1); then
  tail -40 "$T/build.log" >&2
  echo "package: dpkg-buildpackage failed" >&2
  exit 1
fi
echo "package: built in $(( $(date +%s) - start )) s"
deb=$(ls "$T"/jitrca_*_*.deb)
[ -f "$deb" ] || { echo "package: no jitrca_*.deb" >&2; exit 1; }
# dpkg-buildflags' hardening reached the compiler and the linker; warnings are not errors
check "fortify in the compile lines" grep -q -- "-D_FORTIFY_SOURCE=2" "$T/build.log"
check "stack protector" grep -q -- "-fstack-protector-strong" "$T/build.log"
check_not "no -Werror in a package build" grep -E -- "-Werror( |$)" "$T/build.log"
check "a Release build" grep -q -- "-DCMAKE_BUILD_TYPE=Release" "$T/build.log"
mkdir "$T/x" && dpkg-deb -x "$deb" "$T/x"
for b in jitrd jitrctl; do
  check "$b is PIE" sh -c "readelf -h '$T/x/usr/bin/$b' | grep -q 'DYN'"
  check "$b has RELRO" sh -c "readelf -lW '$T/x/usr/bin/$b' | grep -q GNU_RELRO"
  check "$b binds now" sh -c "readelf -dW '$T/x/usr/bin/$b' | grep -q 'BIND_NOW'"
  check "$b is fortified" sh -c "readelf -sW --dyn-syms '$T/x/usr/bin/$b' | grep -q '__[a-z]*_chk'"
done
check "lintian: no errors" lintian --fail-on error "$deb"
grep -E '^[EW]:' "$T/out" >&2 || true

# --- install -------------------------------------------------------------------------------
check "dpkg -i" dpkg -i "$deb"
for f in /usr/bin/jitrd /usr/bin/jitrctl /usr/share/jitrca/profiles/device.json \
  /usr/share/jitrca/profiles/station.json /usr/share/jitrca/templates/default.json \
  /usr/share/jitrca/iot/device.json /usr/share/doc/jitrca/copyright \
  /lib/systemd/system/jitrd.service \
  /usr/lib/sysusers.d/jitrca.conf /usr/lib/tmpfiles.d/jitrca.conf \
  /etc/jitrca/jitrd.json /etc/jitrca/stations.json; do
  check "installed $f" test -f "$f"
done
# docs over 4 KiB are compressed (dh_compress)
for doc in README.md operations.md daemon.md jitr.md; do
  check "installed doc $doc" sh -c "ls /usr/share/doc/jitrca/$doc /usr/share/doc/jitrca/$doc.gz 2>/dev/null | grep -q ."
done
check "conffiles" sh -c "dpkg-query -W -f='\${Conffiles}' jitrca | grep -q /etc/jitrca/jitrd.json"
check "system user jitrca" sh -c '[ "$(getent passwd jitrca | cut -d: -f3)" -lt 1000 ]'
check "jitrca has no login shell" sh -c 'getent passwd jitrca | grep -q nologin'
check "/var/lib/jitrca made by tmpfiles" test "$(stat -c '%U:%G %a' /var/lib/jitrca)" = "jitrca:jitrca 750"
check "jitrctl --version" sh -c '/usr/bin/jitrctl --version | grep -q "0.1.0"'
check "jitrctl config describe: the installed profiles" \
  sh -c '/usr/bin/jitrctl config describe | grep -qF "\`\"/usr/share/jitrca/profiles\"\`"'
check "jitrctl config describe: the installed template" \
  sh -c '/usr/bin/jitrctl config describe | grep -qF "\`\"/usr/share/jitrca/templates/default.json\"\`"'
check "the unit's hardening" bash "$src/tests/package/unit_security.sh" /lib/systemd/system/jitrd.service

# --- the unit's restrictions, as far as this machine allows ----------------------------------
# as jitrca, no new privileges, no capabilities; with a private mount namespace (when unshare
# may make one): the whole file system read-only but /var/lib/jitrca, a private /tmp, no homes.
ns=0
if unshare --mount true 2>/dev/null; then ns=1; fi
RESTRICT='
set -e
if [ "$NS" = 1 ]; then
  mount --make-rprivate /
  mount --bind /var/lib/jitrca /var/lib/jitrca
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
  for h in /root /home; do [ -d "$h" ] && mount -t tmpfs -o ro,mode=755 tmpfs "$h"; done
  findmnt -rno TARGET | while read -r m; do
    case $m in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/var/lib/jitrca|/tmp|/root|/home) continue;; esac
    mount -o remount,bind,ro "$m" 2>/dev/null || echo "restrict: $m stays writable" >&2
  done
fi
exec setpriv --reuid=jitrca --regid=jitrca --init-groups --no-new-privs \
  --inh-caps=-all --bounding-set=-all "$@"'
restricted() {
  if [ $ns = 1 ]; then NS=1 unshare --mount sh -c "$RESTRICT" sh "$@"; else NS=0 sh -c "$RESTRICT" sh "$@"; fi
}
if [ $ns = 1 ]; then
  echo "package: jitrd runs as jitrca with no new privileges, no capabilities, / read-only but" \
    "/var/lib/jitrca, private /tmp, no homes"
  check_not "restricted: /etc is read-only" restricted sh -c 'echo x >/etc/jitrca/probe'
  check_not "restricted: /usr is read-only" restricted sh -c 'echo x >/usr/share/jitrca/probe'
  check_not "restricted: /root is hidden" restricted sh -c "ls /root/.bashrc"
else
  echo "package: this machine refuses a mount namespace (unshare --mount): jitrd runs as jitrca" \
    "with no new privileges and no capabilities only"
fi
check "restricted: no new privileges" restricted sh -c 'grep -q "^NoNewPrivs:[[:space:]]*1" /proc/self/status'
check "restricted: no capabilities" restricted sh -c 'grep -q "^CapBnd:[[:space:]]*0*$" /proc/self/status'
check "restricted: /var/lib/jitrca is writable" restricted sh -c 'echo x >/var/lib/jitrca/probe && rm /var/lib/jitrca/probe'

# --- a CA and jitrd from the installed paths ------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
rport=$(free_port) port=$(free_port) aport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$T" \
  --logfile "$T/redis.log" &
RPID=$!
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
install -d -m 750 -o root -g jitrca /etc/jitrca/tls
printf 'package test passphrase\n' >/etc/jitrca/pkgtest.pass
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srvca.key" \
  -out "$T/srvca.pem" -subj /CN=srvca -days 2 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout /etc/jitrca/tls/jitrd.key -out "$T/srv.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/srv.ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/srvca.pem" -CAkey "$T/srvca.key" -CAcreateserial \
  -out /etc/jitrca/tls/jitrd.pem -days 1 -extfile "$T/srv.ext" 2>/dev/null
chown jitrca:jitrca /etc/jitrca/tls/jitrd.key /etc/jitrca/pkgtest.pass
chmod 600 /etc/jitrca/tls/jitrd.key /etc/jitrca/pkgtest.pass
cat >/etc/jitrca/stations.json <<EOF
{"stations": {"line1": {"cas": ["devices"], "profiles": ["device"], "rate": 100, "burst": 100}}}
EOF
# the shipped jitrd.json with this machine's Redis, ports and passphrase file; profiles_dir and
# the JITR template stay at their compiled-in defaults (/usr/share/jitrca)
jq --arg r "redis://127.0.0.1:$rport/0" --arg l "127.0.0.1:$port" --arg a "127.0.0.1:$aport" \
  '.redis_url=$r | .listen=$l | .admin_listen=$a | .key_passphrase_file="/etc/jitrca/pkgtest.pass"
   | .default_ca="devices" | .station_ca="stations" | .workers=2 | del(.profiles_dir)' \
  /etc/jitrca/jitrd.json >/etc/jitrca/pkgtest.json
CFG=/etc/jitrca/pkgtest.json
check "ca init root" restricted /usr/bin/jitrctl --config $CFG ca init root --subject "/CN=Pkg Root" --days 30
check "ca init devices" restricted /usr/bin/jitrctl --config $CFG ca init devices --parent root --subject "/CN=Pkg Devices"
check "ca init stations" restricted /usr/bin/jitrctl --config $CFG ca init stations --parent root --subject "/CN=Pkg Stations"
check "station issue" restricted /usr/bin/jitrctl --config $CFG station issue line1 --out /var/lib/jitrca/st
check "jitrd --check-config" restricted /usr/bin/jitrd --check-config --config $CFG
cp "$T/out" "$T/check-config.out"
check "check-config says OK" grep -q "configuration OK" "$T/check-config.out"
check "the CA key belongs to jitrca" test "$(stat -c %U /var/lib/jitrca/ca/devices/cert.pem)" = jitrca

# exec: $JPID is jitrd itself (unshare and setpriv exec it), not a subshell around it
if [ $ns = 1 ]; then
  exec_restricted=(unshare --mount sh -c "$RESTRICT" sh)
else
  exec_restricted=(sh -c "$RESTRICT" sh)
fi
NS=$ns "${exec_restricted[@]}" /usr/bin/jitrd --config $CFG 2>"$T/jitrd.log" &
JPID=$!
up=0
for _ in $(seq 150); do
  curl -sf "http://127.0.0.1:$aport/readyz" >/dev/null 2>&1 && { up=1; break; }; sleep 0.1
done
if [ $up = 1 ]; then pass; else fail "jitrd under the restrictions is not ready"; tail -20 "$T/jitrd.log" >&2; fi
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/dev.key" \
  -out "$T/dev.csr" -subj /CN=pkg-device-1 2>/dev/null
code=$(curl -sS --cacert "$T/srvca.pem" --cert /var/lib/jitrca/st/line1.crt \
  --key /var/lib/jitrca/st/line1.key -H 'Content-Type: application/x-pem-file' \
  --data-binary @"$T/dev.csr" -o "$T/dev.json" -w '%{http_code}' "https://127.0.0.1:$port/v1/sign" || true)
if [ "$code" = 201 ]; then pass; else fail "sign under the restrictions: HTTP $code $(head -c 300 "$T/dev.json")"; fi
jq -r .certificate "$T/dev.json" >"$T/dev.pem" 2>/dev/null || true
check "the certificate verifies" openssl verify -CAfile /var/lib/jitrca/ca/root/cert.pem \
  -untrusted /var/lib/jitrca/ca/devices/cert.pem "$T/dev.pem"
check "the certificate is audited" grep -q "$(jq -r .certificateId "$T/dev.json")" /var/lib/jitrca/audit/audit.log
check "metrics served" sh -c "curl -sf http://127.0.0.1:$aport/metrics | grep -q '^jitrd_certificates_issued_total'"
kill -TERM "$JPID"
rc=0; wait "$JPID" || rc=$?
JPID=
if [ $rc = 0 ]; then pass; else fail "jitrd exit status $rc after SIGTERM"; tail -20 "$T/jitrd.log" >&2; fi
check "audit log verifies" restricted /usr/bin/jitrctl --config $CFG audit verify

# --- remove, purge: the data survives ---------------------------------------------------------
snapshot() { (cd /var/lib/jitrca && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
snapshot >"$T/before"
check "the snapshot names the audit log" grep -q "audit/audit.log" "$T/before"
check "dpkg -r" dpkg -r jitrca
check "jitrd removed" test ! -e /usr/bin/jitrd
check "conffiles kept by remove" test -f /etc/jitrca/jitrd.json
check "dpkg --purge" dpkg --purge jitrca
check "conffiles gone with purge" test ! -e /etc/jitrca/jitrd.json
snapshot >"$T/after"
check "/var/lib/jitrca survived remove and purge unchanged" diff "$T/before" "$T/after"
check "/var/lib/jitrca still belongs to jitrca" test "$(stat -c %U /var/lib/jitrca)" = jitrca

echo "package: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
