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
      mtail dovecot-imapd dovecot-lmtpd acl iproute2"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
# npm (Debian's, or one that came with Node.js) fetches Delta Chat's core.
command -v npm >/dev/null 2>&1 || missing="$missing npm"

# Delta Chat's core (JSON-RPC over stdio) for the real-relay suite, pinned,
# from npm into a cache the tests find (tests/integration/deltachat_client.py).
DC_VERSION=2.62.0
DC_CACHE=${FILTERMAIL_DELTACHAT_CACHE:-/var/cache/filtermail-tests/deltachat-$DC_VERSION}
DC_BIN=$DC_CACHE/node_modules/@deltachat/stdio-rpc-server-linux-x64/deltachat-rpc-server
deltachat() {
    [ -x "$DC_BIN" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: $DC_BIN missing (run tests/deps.sh as root)" >&2
        return 1
    fi
    command -v npm >/dev/null 2>&1 || { echo "deps: npm is not installed (apt-get install npm)" >&2; return 1; }
    echo "deps: installing @deltachat/stdio-rpc-server-linux-x64@$DC_VERSION into $DC_CACHE"
    mkdir -p "$DC_CACHE"
    npm install --silent --no-audit --no-fund --prefix "$DC_CACHE" \
        "@deltachat/stdio-rpc-server-linux-x64@$DC_VERSION" >/dev/null
    [ -x "$DC_BIN" ] || { echo "deps: npm did not install $DC_BIN" >&2; return 1; }
}

if [ -z "$missing" ]; then
    deltachat
    exit
fi

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
deltachat
