#!/usr/bin/env bash
# Installs the Debian 12 packages jitrca needs to build, test and run its demo, when missing.
# Run as root (or with sudo available). Nothing else is downloaded. debhelper, lintian and
# systemd build and check the Debian package (tests/package/); prometheus brings promtool, which
# checks deploy/prometheus/alerts.yml.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libssl-dev libevent-dev libjansson-dev libcurl4-openssl-dev libhiredis-dev
      redis-server redis-tools softhsm2 opensc libengine-pkcs11-openssl libp11-kit-dev
      gnutls-bin openssl jq curl procps
      debhelper lintian systemd util-linux dpkg-dev prometheus)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
