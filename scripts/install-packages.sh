#!/bin/sh
# Installs the Debian packages named as arguments that are not installed
# yet (apt-get install -y --no-install-recommends); used by the Makefile.
set -eu
missing=""
for p in "$@"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -n "$missing" ] || exit 0
echo "installing:$missing"
apt-get update -qq
# shellcheck disable=SC2086 # the list is meant to split into words
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
