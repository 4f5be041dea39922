#!/bin/sh
# Installs the Debian packages that building and testing filtermail need.
# As root, missing packages are installed with apt-get; otherwise the missing
# ones are listed and the script fails, so nothing is skipped silently.
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev
      libmilter-dev libunbound-dev libssl-dev dns-root-data
      libopendkim-dev libevent-dev python3-dkim libhiredis-dev redis-server
      postfix python3 swaks ldnsutils
      libmicrohttpd-dev nginx-light libcurl4-openssl-dev libidn2-dev
      libsystemd-dev debhelper dpkg-dev fakeroot lintian systemd openssl man-db
      mtail"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages:$missing" >&2
    echo "deps: run as root (or: sudo apt-get install$missing)" >&2
    exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Postfix's package must not start a system instance or ask questions.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
