#!/bin/sh
# Latch demo: a coordinator and four nodes (web, api, db, laptop), each in
# its own network namespace on an underlay bridge in 198.18.0.0/24, a
# sample NetworkPolicy set (laptop->web:443, web->api:8080, api->db:5432),
# then the connectivity matrix measured with real TCP connects through the
# WireGuard tunnels beside the one `latch policy eval` predicts, each
# node's peers, and the web console on 127.0.0.1:7443 (DEMO_CONSOLE_PORT). It stays up until Ctrl-C (or exits at once with
# DEMO_HOLD=0) and removes everything it made, also after a failure.
set -eu

BIN=${BIN:-bin/latch}
SUF=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
WORK=$(mktemp -d /tmp/latch-demo.XXXXXX)
HUB=ld-hub-$SUF
HOSTS="coord web api db laptop"
PIDS=""

say() { printf '\n== %s\n' "$*"; }

cleanup() {
	set +e
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	sleep 1
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	for h in $HOSTS; do ip netns del "ld-$h-$SUF" 2>/dev/null; done
	ip netns del "$HUB" 2>/dev/null
	rm -f /var/run/wireguard/ld"$SUF"*.sock
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# inns runs a command in a host's namespace. Processes started in the
# background call `ip netns exec` directly instead, so that $! is the
# process itself (ip execs it), not a subshell running the function, and
# cleanup stops what it started.
inns() { ns=$1; shift; ip netns exec "ld-$ns-$SUF" "$@"; }

say "underlay: bridge in $HUB, hosts on 198.18.0.0/24"
ip netns add "$HUB"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
i=1
for h in $HOSTS; do
	ns=ld-$h-$SUF
	ip netns add "$ns"
	ip -n "$HUB" link add "v$i" type veth peer name eth0 netns "$ns"
	ip -n "$HUB" link set "v$i" master br0 up
	ip -n "$ns" addr add "198.18.0.$i/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
	i=$((i + 1))
done

COORD=https://198.18.0.1:7443
export LATCH_COORDINATOR="$COORD" LATCH_TOKEN_FILE="$WORK/coord/admin.token"
say "coordinator on $COORD (data in $WORK/coord)"
ip netns exec "ld-coord-$SUF" "$BIN" coordinator --listen 198.18.0.1:7443 --data-dir "$WORK/coord" \
	--trust-domain example.test --keepalive 2s >"$WORK/coordinator.log" 2>&1 &
PIDS="$PIDS $!"
n=0
until inns coord "$BIN" admin node list >/dev/null 2>&1; do
	n=$((n + 1)); [ $n -lt 50 ] || { cat "$WORK/coordinator.log"; exit 1; }
	sleep 0.2
done

# The web console: the coordinator listens inside its namespace, so socat
# relays 127.0.0.1:DEMO_CONSOLE_PORT on this machine into it.
CPORT=${DEMO_CONSOLE_PORT:-7443}
socat "TCP-LISTEN:$CPORT,bind=127.0.0.1,reuseaddr,fork" \
	"EXEC:ip netns exec ld-coord-$SUF socat STDIO TCP\:198.18.0.1\:7443" 2>"$WORK/socat.log" &
PIDS="$PIDS $!"
n=0
until curl -fsk -o /dev/null "https://127.0.0.1:$CPORT/console/login" 2>/dev/null; do
	n=$((n + 1)); [ $n -lt 50 ] || { echo "console relay on 127.0.0.1:$CPORT failed:"; cat "$WORK/socat.log"; exit 1; }
	sleep 0.2
done
say "web console: https://127.0.0.1:$CPORT/console/ (user admin, password $(cat "$WORK/coord/admin-password"); the certificate is from the coordinator's own CA, $WORK/coord/ca.crt)"

# A node's labels come from its join token: one token per node, each
# giving exactly that node's labels.
i=2
for h in web api db laptop; do
	TOKEN=$(inns coord "$BIN" admin token create --namespace prod --labels "app=$h" --ttl 10m)
	say "join token for $h (app=$h): $TOKEN"
	ip netns exec "ld-$h-$SUF" "$BIN" node --coordinator "$COORD" --join-token "$TOKEN" --state-dir "$WORK/$h" \
		--iface "ld$SUF$i" --name "$h" --labels "app=$h" --endpoint "198.18.0.$i:51820" \
		--listen-port 51820 >"$WORK/node-$h.log" 2>&1 &
	PIDS="$PIDS $!"
	i=$((i + 1))
done
for h in web api db laptop; do
	n=0
	until inns "$h" "$BIN" status --state-dir "$WORK/$h" --json 2>/dev/null | grep -q '"connected": *true'; do
		n=$((n + 1)); [ $n -lt 100 ] || { cat "$WORK/node-$h.log"; exit 1; }
		sleep 0.2
	done
done

say "policy: examples/demo-policy.yaml"
inns coord "$BIN" policy apply -f examples/demo-policy.yaml

ipof() { inns "$1" "$BIN" status --state-dir "$WORK/$1" --json | sed -n 's/.*"ip": *"\([0-9.]*\)".*/\1/p'; }
portof() { case $1 in web) echo 443 ;; api) echo 8080 ;; db) echo 5432 ;; *) echo 22 ;; esac; }

# The inventory that `latch policy eval` predicts from: the four nodes as
# workloads with the addresses the coordinator gave them.
{
	echo "namespaces: [{name: prod}]"
	echo "workloads:"
	for h in web api db laptop; do
		echo "  - {name: $h, namespace: prod, labels: {app: $h}, ip: $(ipof "$h"), ports: [{port: $(portof "$h")}]}"
	done
} >"$WORK/inventory.yaml"

for h in web api db laptop; do
	ip netns exec "ld-$h-$SUF" nc -lk "$(ipof "$h")" "$(portof "$h")" >/dev/null 2>&1 &
	PIDS="$PIDS $!"
done
sleep 3 # let the views reach every node before measuring

say "connectivity matrix: measured through the tunnels (predicted by latch policy eval)"
printf '%-8s' "FROM\\TO"
for to in web api db laptop; do printf '%-16s' "$to:$(portof "$to")"; done
echo
"$BIN" policy eval --inventory "$WORK/inventory.yaml" --policy examples/demo-policy.yaml -o json | tr -d ' \n' >"$WORK/eval.json"
leaks=0
misses=0
for from in web api db laptop; do
	printf '%-8s' "$from"
	for to in web api db laptop; do
		if [ "$from" = "$to" ]; then printf '%-16s' "."; continue; fi
		if grep -q "\"from\":\"prod/$from\",\"to\":\"prod/$to\",\"port\":$(portof "$to"),\"protocol\":\"TCP\",\"allowed\":true" "$WORK/eval.json"; then
			p=allow
		else
			p=deny
		fi
		# A flow the policy allows gets a few tries (a tunnel may still be
		# handshaking); one the policy denies gets one.
		tries=1
		[ $p = allow ] && tries=5
		m=closed
		while [ "$tries" -gt 0 ]; do
			if inns "$from" nc -z -w 2 "$(ipof "$to")" "$(portof "$to")" 2>/dev/null; then m=open; break; fi
			tries=$((tries - 1))
		done
		printf '%-16s' "$m ($p)"
		if [ $m = open ] && [ $p = deny ]; then leaks=$((leaks + 1)); fi
		if [ $m = closed ] && [ $p = allow ]; then misses=$((misses + 1)); fi
	done
	echo
done
echo "(enforcement: $(inns web "$BIN" status --state-dir "$WORK/web" --json | sed -n 's/.*"enforce": *"\([a-z]*\)".*/\1/p'); with --enforce off a node reaches any port of a peer)"

say "each node's WireGuard peers"
for h in web api db laptop; do
	echo "-- $h"
	inns "$h" "$BIN" peers --state-dir "$WORK/$h"
done

echo
echo "allowed flows that did not connect: $misses (must be 0)"
echo "denied flows that connected: $leaks (must be 0)"
[ "$misses" -eq 0 ] && [ "$leaks" -eq 0 ] || exit 1
if [ "${DEMO_HOLD:-1}" = 1 ]; then
	say "up; press Ctrl-C to stop and clean up"
	# The shell runs a trap only after its foreground command ends: sleep
	# in the background and wait, which a signal interrupts at once (a
	# SIGTERM to the script alone would otherwise wait out the sleep).
	while :; do
		sleep 3600 &
		HOLD=$!
		PIDS="$PIDS $HOLD"
		wait "$HOLD"
	done
fi
