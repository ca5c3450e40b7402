#!/bin/sh
# Installs the Debian 12 packages sluice needs to build and test, only those
# missing. Idempotent; used by `make deps` and by .ci/run. Needs root (or sudo).
set -e
PKGS="build-essential cmake pkg-config libluajit-5.1-dev luajit libuv1-dev lua-luv-dev \
lua-busted libreadline-dev tmux valgrind libhiredis-dev redis-server \
libcurl4-openssl-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
