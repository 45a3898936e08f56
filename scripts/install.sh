#!/bin/sh
# Latch install script: installs the latch binary from a coordinator,
# enrolls this machine as a node with a join token and runs the node agent
# as a service (systemd on Linux, launchd on macOS).
#
#   ... | curl -fsS --cacert /dev/stdin https://COORD:7443/install.sh | sudo --preserve-env=LATCH_TOKEN sh
#
# (README.md, "Install on a server or laptop", has the whole command: it
# checks the coordinator's CA against the token before it fetches this
# script.) The join token latch1.<id>.<secret>.<ca-hash> comes from the
# environment (LATCH_TOKEN) or a file, not from the command line, where any
# local user can read it (ps); an enrolled node needs none to upgrade.
# Options:
#
#   --token-file FILE  read the join token from the first line of FILE
#   --token T          the join token itself (visible in ps: prefer the two
#                      above)
#   --coordinator URL  https://HOST:PORT (default: the coordinator that served
#                      this script, or the one an earlier install configured)
#   --enforce MODE     auto (Linux default), ebpf, userspace (macOS), off
#   --name NAME        node name to enroll with (default: the host name)
#   --labels k=v,k=v   node labels to enroll with
#   --uninstall        stop the node and remove everything this script added
#   --keep-state       with --uninstall: keep /var/lib/latch (the identity)
#
# Trust: the token's last part is the SHA-256 of the coordinator CA's public
# key (SPKI). The script fetches the CA certificate, refuses it unless it is
# exactly one PEM certificate and nothing else (curl --cacert trusts every
# certificate in a file), checks that hash and its self-signature with
# openssl, and then fetches SHA256SUMS and the binary over TLS verified
# against that one certificate only; the binary must match its sum.
# Temporary files are in a directory of its own (mktemp -d, mode 0700).
#
# Re-running upgrades in place: the binary is replaced atomically and the
# service restarted; the identity in /var/lib/latch is kept. A failure
# before the service starts (unreachable coordinator, wrong checksum, token
# refused) undoes every change.
set -eu

# The whole script is one compound command, so that sh reads all of it
# before running any of it: a download cut short runs nothing.
{

# Set by the coordinator that serves this script.
default_coordinator=''

bin_dir=/usr/local/bin
bin=$bin_dir/latch
conf_dir=/etc/latch
conf=$conf_dir/node.yaml
state=/var/lib/latch
unit=/etc/systemd/system/latch-node.service
unit_link=/etc/systemd/system/multi-user.target.wants/latch-node.service
plist=/Library/LaunchDaemons/net.latchnet.latch-node.plist
label=net.latchnet.latch-node
log_file=/var/log/latch-node.log
pid_file=/run/latch-node.pid
wait_secs=${LATCH_INSTALL_WAIT:-60}

say() { printf 'latch install: %s\n' "$*" >&2; }
die() {
	printf 'latch install: error: %s\n' "$*" >&2
	exit 1
}

token=''
token_file=''
token_flags=0
coordinator=''
enforce=''
name=''
labels=''
uninstall=0
keep_state=0
while [ $# -gt 0 ]; do
	case $1 in
	--token | --token-file | --coordinator | --enforce | --name | --labels)
		[ $# -ge 2 ] || die "$1 needs a value"
		case $1 in
		--token)
			token=$2
			token_flags=$((token_flags + 1))
			say "note: --token shows the token to every local user (ps); pass it in LATCH_TOKEN or --token-file instead"
			;;
		--token-file)
			token_file=$2
			token_flags=$((token_flags + 1))
			;;
		--coordinator) coordinator=$2 ;;
		--enforce) enforce=$2 ;;
		--name) name=$2 ;;
		--labels) labels=$2 ;;
		esac
		shift 2
		;;
	--uninstall) uninstall=1 && shift ;;
	--keep-state) keep_state=1 && shift ;;
	-h | --help)
		echo "usage: LATCH_TOKEN=T install.sh [--coordinator URL] [--enforce auto|ebpf|userspace|off] [--name NAME] [--labels k=v,k=v]" >&2
		echo "       install.sh --token-file FILE [options]" >&2
		echo "       install.sh --uninstall [--keep-state]" >&2
		exit 0
		;;
	*) die "unknown option $1 (see --help)" ;;
	esac
done

[ "$token_flags" -le 1 ] || die "give the token once: LATCH_TOKEN, --token-file FILE or --token T"
if [ "$token_flags" = 0 ]; then
	token=${LATCH_TOKEN:-}
fi
# Not passed on to anything this script starts (the node agent among them).
unset LATCH_TOKEN

[ "$(id -u)" = 0 ] || die "run as root: ... | sudo --preserve-env=LATCH_TOKEN sh (README.md, \"Install on a server or laptop\")"

case $(uname -s) in
Linux) os=linux ;;
Darwin) os=darwin ;;
*) die "no latch build for $(uname -s): Linux and macOS only" ;;
esac
case $(uname -m) in
x86_64 | amd64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
*) die "no latch build for the $(uname -m) architecture: amd64 and arm64 only" ;;
esac
case $os-$arch in
linux-amd64 | linux-arm64 | darwin-arm64) ;;
*) die "no latch build for $os-$arch: the builds are linux-amd64, linux-arm64 and darwin-arm64" ;;
esac

systemd=0
if [ "$os" = linux ] && [ -d /run/systemd/system ]; then
	systemd=1
fi

# --- the service -----------------------------------------------------------

# node_pid prints the pid of the background node started without systemd,
# if it still runs.
node_pid() {
	[ -f "$pid_file" ] || return 1
	p=$(cat "$pid_file")
	case $p in '' | *[!0-9]*) return 1 ;; esac
	kill -0 "$p" 2>/dev/null || return 1
	grep -q latch "/proc/$p/cmdline" 2>/dev/null || return 1
	echo "$p"
}

stop_service() {
	if [ "$os" = darwin ]; then
		launchctl bootout "system/$label" 2>/dev/null || true
	elif [ "$systemd" = 1 ]; then
		systemctl stop latch-node.service 2>/dev/null || true
	fi
	if p=$(node_pid); then
		kill -TERM "$p" 2>/dev/null || true
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 150 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$p" 2>/dev/null || true
	fi
	rm -f "$pid_file"
}

start_service() {
	if [ "$os" = darwin ]; then
		launchctl bootstrap system "$plist"
	elif [ "$systemd" = 1 ]; then
		systemctl daemon-reload
		systemctl enable latch-node.service >/dev/null 2>&1
		systemctl restart latch-node.service
	else
		# No systemd running (a container, a chroot): start the agent in
		# the background; the unit is in place for a later boot with systemd.
		nohup "$bin" node --config "$conf" >>"$log_file" 2>&1 </dev/null &
		echo $! >"$pid_file"
		say "systemd is not running here: started the node agent in the background (pid $(cat "$pid_file"), log $log_file); it does not start again at boot unless systemd runs latch-node.service"
	fi
}

service_alive() {
	if [ "$os" = darwin ]; then
		launchctl print "system/$label" >/dev/null 2>&1
	elif [ "$systemd" = 1 ]; then
		systemctl is-active --quiet latch-node.service
	else
		node_pid >/dev/null
	fi
}

service_log() {
	if [ "$systemd" = 1 ]; then
		journalctl -u latch-node.service -n 20 --no-pager 2>/dev/null || true
	elif [ -f "$log_file" ]; then
		tail -n 20 "$log_file"
	fi
}

write_unit() {
	cat >"$1" <<'EOF'
# Latch node agent. The install script writes this file; the same text is
# packaging/systemd/latch-node.service. Settings: /etc/latch/node.yaml.
[Unit]
Description=Latch node agent (WireGuard overlay, SPIFFE identity)
Documentation=https://github.com/latchnet/latch
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=/usr/local/bin/latch node --config /etc/latch/node.yaml --state-dir /var/lib/latch
Restart=on-failure
RestartSec=5s
# CAP_NET_ADMIN: the WireGuard TUN device, its address and routes, TCX and
# cgroup links of the eBPF enforcer. CAP_BPF: its maps and programs.
# CAP_PERFMON: without it the verifier refuses the programs' pointer
# arithmetic. Nothing else (e2e TestNodeUnitCapabilities runs the agent
# with this set). bpffs must be mounted on /sys/fs/bpf, as systemd does.
CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF CAP_PERFMON
AmbientCapabilities=CAP_NET_ADMIN CAP_BPF CAP_PERFMON
LimitMEMLOCK=infinity
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
UMask=0077
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
DeviceAllow=/dev/net/tun rw
StateDirectory=latch
StateDirectoryMode=0700
# wireguard-go's control sockets (/run/wireguard/IFACE.sock).
RuntimeDirectory=wireguard
RuntimeDirectoryPreserve=yes

[Install]
WantedBy=multi-user.target
EOF
}

write_plist() {
	cat >"$1" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key><string>$label</string>
	<key>ProgramArguments</key>
	<array>
		<string>$bin</string><string>node</string>
		<string>--config</string><string>$conf</string>
		<string>--state-dir</string><string>$state</string>
	</array>
	<key>RunAtLoad</key><true/>
	<key>KeepAlive</key><true/>
	<key>StandardOutPath</key><string>$log_file</string>
	<key>StandardErrorPath</key><string>$log_file</string>
</dict>
</plist>
EOF
}

# --- uninstall -------------------------------------------------------------

if [ "$uninstall" = 1 ]; then
	stop_service
	if [ -x "$bin" ]; then
		# The eBPF enforcer's pins outlive the agent on purpose (fail-static).
		"$bin" node --cleanup >/dev/null 2>&1 || true
	fi
	if [ "$os" = darwin ]; then
		rm -f "$plist"
	else
		rm -f "$unit_link" "$unit"
		rmdir "${unit_link%/*}" 2>/dev/null || true
		if [ "$systemd" = 1 ]; then
			systemctl daemon-reload || true
		fi
	fi
	rm -f "$bin" "$conf" "$log_file" "$pid_file"
	rmdir "$conf_dir" 2>/dev/null || true
	if [ "$keep_state" = 1 ]; then
		say "kept $state (this node's identity); remove it to enroll afresh"
	else
		rm -rf "$state"
	fi
	say "uninstalled latch; remove the node on the coordinator with: latch admin node delete NAME"
	exit 0
fi

# --- install or upgrade ----------------------------------------------------

command -v curl >/dev/null 2>&1 || die "curl is needed: install it (apt-get install curl)"

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | awk '{print $1}'
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | awk '{print $1}'
	else
		openssl dgst -sha256 "$1" | awk '{print $NF}'
	fi
}

enrolled=0
if [ -f "$state/svid.pem" ] && [ -f "$state/bundle.pem" ]; then
	enrolled=1
fi

if [ -z "$coordinator" ] && [ -f "$conf" ]; then
	coordinator=$(sed -n 's/^coordinator: *//p' "$conf" | head -n 1)
fi
if [ -z "$coordinator" ]; then
	coordinator=$default_coordinator
fi
[ -n "$coordinator" ] || die "no coordinator: pass --coordinator https://HOST:PORT"
case $coordinator in
https://*) ;;
*) die "--coordinator $coordinator: want https://HOST:PORT" ;;
esac
case $coordinator in
*[!A-Za-z0-9.:/[\]-]*) die "--coordinator $coordinator: want https://HOST:PORT" ;;
esac
coordinator=${coordinator%/}

if [ -z "$enforce" ]; then
	enforce=$(sed -n 's/^enforce: *//p' "$conf" 2>/dev/null | head -n 1)
fi
if [ -z "$enforce" ]; then
	if [ "$os" = darwin ]; then enforce=userspace; else enforce=auto; fi
fi
case $enforce in
auto | ebpf | userspace | off) ;;
*) die "--enforce $enforce: want auto, ebpf, userspace or off" ;;
esac

if [ -n "$token_file" ]; then
	if [ ! -f "$token_file" ] || [ ! -r "$token_file" ]; then
		die "--token-file $token_file: cannot read it: give a file holding the join token"
	fi
	IFS= read -r token <"$token_file" || [ -n "$token" ] || die "--token-file $token_file: the file is empty: it must hold the join token"
fi

# Private to this run (mktemp -d makes it 0700): another local user can
# neither plant nor swap the CA certificate or the binary before they are
# used.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/latch-install.XXXXXX")
chmod 0700 "$tmp"
committed=0
created=''
backup_bin=''
backup_conf=''

# cleanup runs at exit: after a failure before the service started it
# undoes every change this run made.
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	rc=$?
	trap - EXIT INT TERM
	if [ "$committed" = 0 ] && [ "$rc" != 0 ]; then
		for f in $created; do
			rm -rf "$f"
		done
		if [ -n "$backup_bin" ]; then
			mv -f "$backup_bin" "$bin"
		fi
		if [ -n "$backup_conf" ]; then
			mv -f "$backup_conf" "$conf"
		fi
		say "nothing was changed"
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# fetch URL FILE: GET over TLS verified against the CA in $tmp/ca.pem only
# (one certificate: pinned_ca made that file).
fetch() {
	code=$(curl -sS --proto '=https' --cacert "$tmp/ca.pem" --connect-timeout 10 --max-time 300 \
		-o "$2" -w '%{http_code}' "$1") || die "fetching $1 failed (above); is the coordinator reachable?"
	[ "$code" = 200 ] || die "fetching $1: HTTP $code: $(head -c 300 "$2")"
}

# pinned_ca SERVED OUT WANT: SERVED, the CA certificate as the coordinator
# sent it, must be one PEM certificate and nothing else: no second
# certificate (curl --cacert would trust it unchecked), no key, no text
# around it. OUT gets that certificate as openssl reads it, which must be
# byte for byte what was sent, and its public key (SPKI) must hash to WANT.
# Only OUT is trusted afterwards.
pinned_ca() {
	refuse="$coordinator/ca.pem is not one PEM certificate alone: refusing it: it must hold the coordinator's CA certificate and nothing else; is something between this machine and the coordinator changing what it sends?"
	awk '
		NR == 1 { ok = ($0 == "-----BEGIN CERTIFICATE-----"); next }
		closed { ok = 0; next }
		$0 == "-----END CERTIFICATE-----" { closed = 1; next }
		$0 !~ "^[A-Za-z0-9+/]+=*$" { ok = 0 }
		END { exit !(ok && closed) }' "$1" || die "$refuse"
	openssl x509 -in "$1" -out "$2" 2>/dev/null || die "$refuse"
	openssl x509 -in "$2" -outform DER -out "$tmp/ca.der" 2>/dev/null || die "$refuse"
	sed '1d;$d' "$1" | openssl base64 -d -out "$tmp/served.der" 2>/dev/null || die "$refuse"
	[ "$(sha256 "$tmp/ca.der")" = "$(sha256 "$tmp/served.der")" ] || die "$refuse"
	got=$(openssl x509 -in "$2" -noout -pubkey 2>/dev/null | openssl pkey -pubin -outform DER 2>/dev/null |
		openssl dgst -sha256 | awk '{print $NF}')
	[ "$got" = "$3" ] || die "the coordinator at $coordinator is not the one the token was made for: its CA hash is ${got:-unreadable}, the token says $3"
	# Made by the holder of that key (OpenSSL does not check a trust
	# anchor's own signature otherwise), a CA, and valid now.
	openssl verify -check_ss_sig -CAfile "$2" "$2" >/dev/null 2>&1 ||
		die "$coordinator/ca.pem is not a valid self-signed CA certificate: refusing it (openssl verify -check_ss_sig says: $(openssl verify -check_ss_sig -CAfile "$2" "$2" 2>&1 | tail -n 1))"
}

if [ -n "$token" ]; then
	case $token in
	*[!A-Za-z0-9.]* | latch1.*.*.*.*) die "the join token: want latch1.<id>.<secret>.<ca-hash>, as \`latch admin token create\` prints" ;;
	latch1.*.*.*) ;;
	*) die "the join token: want latch1.<id>.<secret>.<ca-hash>, as \`latch admin token create\` prints" ;;
	esac
	want=$(printf '%s' "${token##*.}" | tr 'A-F' 'a-f')
	printf '%s' "$want" | grep -Eq '^[0-9a-f]{64}$' || die "the join token: the last part must be the 64 hex characters of the CA hash; was the token copied completely?"
	command -v openssl >/dev/null 2>&1 || die "openssl is needed to check the coordinator's CA against the token: install it (apt-get install openssl)"
	# Unauthenticated on purpose: the certificate is accepted only if it is
	# the one certificate sent and its public key hashes to the value in
	# the token.
	curl -sS -k --proto '=https' --connect-timeout 10 --max-time 60 --max-filesize 65536 \
		-o "$tmp/served-ca.pem" "$coordinator/ca.pem" ||
		die "cannot reach the coordinator at $coordinator (above); check the URL and that this machine can reach it"
	pinned_ca "$tmp/served-ca.pem" "$tmp/ca.pem" "$want"
elif [ "$enrolled" = 1 ]; then
	# Upgrade of an enrolled node: trust the CA it enrolled with.
	cp "$state/bundle.pem" "$tmp/ca.pem"
else
	die "a join token is required: this machine is not enrolled yet (create one with \`latch admin token create\` and pass it in LATCH_TOKEN or --token-file)"
fi

file=latch-$os-$arch
say "downloading $file from $coordinator"
fetch "$coordinator/dl/SHA256SUMS" "$tmp/SHA256SUMS"
fetch "$coordinator/dl/$file" "$tmp/$file"
sum=$(awk -v f="$file" '$2 == f || $2 == "*" f {print $1}' "$tmp/SHA256SUMS" | head -n 1)
[ -n "$sum" ] || die "SHA256SUMS from $coordinator lists no $file"
got=$(sha256 "$tmp/$file")
[ "$got" = "$sum" ] || die "checksum mismatch for $file: got $got, SHA256SUMS says $sum; the download is corrupt or was tampered with"
chmod 0755 "$tmp/$file"
version=$("$tmp/$file" version) || die "the downloaded $file does not run on this machine"

# Install the binary atomically (a rename in the same directory).
mkdir -p "$bin_dir"
if [ -e "$bin" ]; then
	backup_bin=$tmp/latch.old
	cp -p "$bin" "$backup_bin"
else
	created="$created $bin"
fi
cp "$tmp/$file" "$bin_dir/.latch.new.$$"
mv -f "$bin_dir/.latch.new.$$" "$bin"

# The node's settings; flags given to latch node win over them.
if [ ! -d "$conf_dir" ]; then
	mkdir -p "$conf_dir"
	created="$created $conf_dir"
fi
if [ -e "$conf" ]; then
	backup_conf=$tmp/node.yaml.old
	cp -p "$conf" "$backup_conf"
else
	created="$created $conf"
fi
printf '# Written by the Latch install script.\ncoordinator: %s\nenforce: %s\n' "$coordinator" "$enforce" >"$conf.new"
chmod 0644 "$conf.new"
mv -f "$conf.new" "$conf"

# Enroll before starting anything, so that a refused token fails here.
if [ ! -d "$state" ]; then
	created="$created $state"
fi
if [ "$enrolled" = 0 ]; then
	say "enrolling with $coordinator"
	set -- --enroll-only --coordinator "$coordinator" --state-dir "$state"
	[ -z "$name" ] || set -- "$@" --name "$name"
	[ -z "$labels" ] || set -- "$@" --labels "$labels"
	LATCH_JOIN_TOKEN=$token "$bin" node "$@" 2>"$tmp/enroll.log" >/dev/null ||
		die "enrollment failed: $(sed -n 's/^latch: //p' "$tmp/enroll.log" | tail -n 1)"
fi

# The service definition.
if [ "$os" = darwin ]; then
	[ -e "$plist" ] || created="$created $plist"
	write_plist "$plist.new"
	mv -f "$plist.new" "$plist"
else
	[ -e "$unit" ] || created="$created $unit"
	if [ ! -d "${unit_link%/*}" ]; then
		mkdir -p "${unit_link%/*}"
		created="$created ${unit_link%/*}"
	fi
	write_unit "$unit.new"
	mv -f "$unit.new" "$unit"
	if [ ! -L "$unit_link" ]; then
		created="$created $unit_link"
		ln -s "$unit" "$unit_link"
	fi
fi

stop_service
start_service
committed=1

i=0
while [ $i -lt "$wait_secs" ]; do
	if "$bin" status --state-dir "$state" --json 2>/dev/null | grep -q '"connected": true'; then
		say "installed $version; the node is connected"
		"$bin" status --state-dir "$state"
		exit 0
	fi
	if ! service_alive; then
		service_log >&2
		die "the node agent stopped (log above); the install is in place: fix the cause and run this script again, or remove it with --uninstall"
	fi
	sleep 1
	i=$((i + 1))
done
service_log >&2
"$bin" status --state-dir "$state" >&2 || true
die "the node agent runs but is not connected after ${wait_secs}s (log above)"

}
