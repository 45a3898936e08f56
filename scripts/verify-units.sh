#!/bin/sh
# verify-units.sh UNIT...: systemd-analyze verify for the packaged units, in
# a scratch root holding the system's units and a stand-in
# /usr/local/bin/latch, so it works where systemd does not run and where
# latch is not installed. Any warning fails: systemd ignores a key it cannot
# parse and would start the service without it.
set -eu
[ $# -gt 0 ] || {
	echo "usage: scripts/verify-units.sh UNIT..." >&2
	exit 2
}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
printf '#!/bin/sh\n' >"$root/usr/local/bin/latch"
chmod 0755 "$root/usr/local/bin/latch"
names=''
for u in "$@"; do
	cp "$u" "$root/etc/systemd/system/"
	names="$names ${u##*/}"
done
# shellcheck disable=SC2086 # one word per unit name
out=$(systemd-analyze verify --root="$root" $names 2>&1) || {
	echo "$out" >&2
	exit 1
}
if [ -n "$out" ]; then
	echo "$out" >&2
	exit 1
fi
echo "systemd-analyze verify: ok:$names"
