#!/bin/sh
# bench-limits.sh: the coordinator's memory under hostile clients, on
# loopback only. Starts a coordinator (BIN, default bin/latch) with a
# temporary data dir on 127.0.0.1:PORT (default 17443) and prints its RSS
# and peak RSS (VmHWM) at rest, after a 256 MiB enroll body, after a 2 MiB
# user name and after 64 concurrent failed console logins, with the HTTP
# answers. Stops the coordinator and removes the data dir.
set -eu
bin=${BIN:-bin/latch}
port=${PORT:-17443}
url=https://127.0.0.1:$port
dd=$(mktemp -d)
pid=''
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dd"
}
trap cleanup EXIT INT TERM

"$bin" coordinator --listen "127.0.0.1:$port" --data-dir "$dd/data" --trust-domain example.test >"$dd/coordinator.log" 2>&1 &
pid=$!
i=0
until curl -ksf "$url/ca.pem" >/dev/null; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "coordinator did not start:" >&2; cat "$dd/coordinator.log" >&2; exit 1; }
	sleep 0.1
done
mem() { awk '/VmRSS/{r=$2} /VmHWM/{h=$2} END{printf "RSS %.0f MiB, peak %.0f MiB", r/1024, h/1024}' "/proc/$pid/status"; }

echo "at rest: $(mem)"
code=$(head -c 268435456 /dev/zero | tr '\0' a |
	curl -ks -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @- "$url/v1/node/enroll" || true)
echo "256 MiB enroll body: HTTP $code; $(mem)"
code=$(head -c 2097152 /dev/zero | tr '\0' a | sed 's/^/{"name":"/; s/$/","password":"x"}/' |
	curl -ks -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @- "$url/console/login" || true)
echo "2 MiB user name: HTTP $code; $(mem)"
n=0
logins=''
while [ $n -lt 64 ]; do
	n=$((n + 1))
	curl -ks -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' \
		--data "{\"name\":\"nobody$n\",\"password\":\"wrong-password\"}" "$url/console/login" >>"$dd/codes" &
	logins="$logins $!"
done
# shellcheck disable=SC2086 # one pid per word
wait $logins
echo "64 concurrent failed logins: $(sort "$dd/codes" | uniq -c | awk '{printf "%s×%s ", $1, $2}'); $(mem)"
