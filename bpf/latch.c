//go:build ignore

// Latch's per-workload enforcement on the WireGuard interface.
//
// Two TCX programs: latch_ingress sees packets that came out of the tunnel
// (remote source -> local workload), latch_egress sees packets about to enter
// it (local workload -> remote destination). Both decide exactly as
// view.Rules.Allows does; see enforce/ebpf for the map layout and the Go side.
//
// The local address (destination on ingress, source on egress) names the
// rules: a local workload's (workloads map, exact address), else, on a
// gateway, a site's (sites map, longest prefix holding it: the packet is
// to or from a host of a site the gateway carries). A workload address
// wins over a site prefix that holds it.
//
// Decisions beyond Rules.Allows:
//   - the local address must be a local workload or a site host; otherwise
//     the packet is dropped;
//   - ICMP: echo request and echo reply pass iff the remote address is in
//     the identity map (a workload in the view; never a site host, which
//     has no identity, so echo between site hosts is dropped); all other
//     ICMP is dropped,
//     including errors (so path-MTU discovery inside the tunnel relies on
//     the overlay MTU, not on ICMP "fragmentation needed");
//   - IPv4 fragments (MF set or offset non-zero) are dropped: a non-first
//     fragment has no ports to check;
//   - non-IPv4 packets pass (the overlay is IPv4; WireGuard's AllowedIPs
//     carry no IPv6 overlay address);
//   - tracked flows (TCP 6 h, UDP/SCTP 60 s idle; set in the config map)
//     pass without a rule lookup while the rule set stays the same; after
//     a switch each flow is decided again at its next packet, as it was
//     opened, and dropped (REASON_DROP_REVOKED) if the new set denies it.
//
// Two cgroup programs (latch_connect4, latch_sendmsg4; latch_bind4 beside
// them, below), attached to the cgroup v2 root, see sockets of local workloads (the cgroups map says which
// cgroup is which workload) connecting or sending into the overlay
// (100.64.0.0/10): they give an unbound socket the workload's overlay
// address as source (bpf_bind on connect, msg_src_ip4 on sendmsg) and refuse
// at once (EPERM) a connect or send the workload's egress rules deny, as
// latch_egress would drop its first packet. Other sockets and destinations
// are left alone.
//
// Overlay addresses belong to their workloads (latch_bind4 and the source
// check of latch_sendmsg4, in the agent's network namespace only, named by
// its cookie in the scope map): a socket of a workload cgroup may bind or
// send from no overlay address but its workload's, and other sockets may
// not use the address of a workload that has a cgroup (the owners map).
// Binding the wildcard address, and addresses outside the overlay, is left
// alone. So a local process cannot take another workload's identity by
// binding its address or by naming it as source (IP_PKTINFO).
//
// The stats array counts what is not a packet verdict: conntrack entries
// written, entries found missing, and refused binds and sources.
//
// Monitor mode (the monitor flag of the workloads or sites map entry, set
// for workloads and sites of a namespace in monitor mode): every drop
// decided once the local workload or site is known becomes a pass, counted as REASON_ALLOW_MONITOR and reported
// with the verdict VERDICT_WOULD_DENY and the drop reason; a TCP, UDP or
// SCTP flow passed this way (denied, seen mid-stream, or revoked by a rule
// set switch) is tracked like an allowed one, so its later packets and its
// replies pass as tracked. A connect or send the cgroup hooks would refuse
// proceeds, reported the same way.
//
// Headers are read directly from the linear packet data at
// settings.l3_offset (0 on the TUN/WireGuard device, which has no link
// header; 14 in BPF_PROG_TEST_RUN, which prepends an Ethernet header), and
// with bpf_skb_load_bytes_relative(BPF_HDR_START_NET) when they are not in
// the linear part.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// TCX verdicts (linux/bpf.h of kernels >= 6.6; defined here so older
// headers build). Allowed packets continue to the next program.
#define VERDICT_ALLOW (-1) // TCX_NEXT
#define VERDICT_DROP 2     // TCX_DROP

#define MAX_RANGES 16
#define MAX_WORKLOADS 4096
#define MAX_SITE_CIDRS 4096
#define MAX_IDENTITIES (1 << 18)
#define MAX_RULES (1 << 18)
#define MAX_CT (1 << 17)
#define MAX_CGROUPS 4096
#define MAX_STATS 16 // room for later stats without changing the pinned map
#define EVENTS_BYTES (1 << 20)
#define EVENT_WAKEUP_BYTES (EVENTS_BYTES / 16)

#define AF_INET 2
#define OVERLAY_NET 0x64400000  // 100.64.0.0
#define OVERLAY_MASK 0xffc00000 // /10

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#define DEFAULT_CT_TCP_NS (6ULL * 3600 * 1000000000ULL)
#define DEFAULT_CT_OTHER_NS (60ULL * 1000000000ULL)

enum dir {
	DIR_INGRESS = 0,
	DIR_EGRESS = 1,
};

enum verdict {
	VERDICT_ALLOWED = 0,
	VERDICT_DROPPED = 1,
	VERDICT_WOULD_DENY = 2, // passed: the workload is in monitor mode
};

// Reasons index the counters array; the Go side mirrors them.
enum reason {
	REASON_ALLOW_ALL = 0,     // the workload's direction allows everything
	REASON_ALLOW_ANY,         // port in the workload's Any ranges
	REASON_ALLOW_IDENTITY,    // port in the rule of the remote identity
	REASON_ALLOW_CIDR,        // port in the longest CIDR rule
	REASON_ALLOW_TRACKED,     // packet of a tracked flow or its reply
	REASON_ALLOW_ICMP_ECHO,   // echo request/reply with a known remote
	REASON_ALLOW_NOT_IPV4,    // not IPv4: not the overlay's business
	REASON_DROP_NO_RULE,      // no rule allows the flow
	REASON_DROP_UNKNOWN_LOCAL,// local address is no local workload or site host
	REASON_DROP_NOT_SYN,      // TCP non-SYN packet of an unknown flow
	REASON_DROP_FRAGMENT,     // IPv4 fragment (ports cannot be checked)
	REASON_DROP_ICMP,         // ICMP other than echo, or unknown remote
	REASON_DROP_PROTOCOL,     // not TCP, UDP, SCTP or ICMP
	REASON_DROP_MALFORMED,    // truncated or invalid header
	REASON_DROP_CONNECT_DENIED, // connect/sendmsg refused by the cgroup hooks
	REASON_DROP_REVOKED,      // tracked flow the active rule set no longer allows
	REASON_EVENT_LOST,        // ring buffer full (counted, not a verdict)
	REASON_ALLOW_MONITOR,     // denied, but passed: monitor mode
	REASON_MAX,
};

// Stats index the stats array (not packet verdicts); the Go side mirrors
// them.
enum stat {
	STAT_CT_CREATED = 0, // conntrack entries written for a new or monitored flow, or re-created
	STAT_CT_RECREATED,   // one direction's entry was gone (evicted or idle) and rebuilt from the other
	STAT_CT_MISS,        // TCP packet without SYN and no live entry: flow evicted, expired or never tracked
	STAT_BIND_REFUSED,   // bind of an overlay address the socket's cgroup does not own (EPERM)
	STAT_SOURCE_REFUSED, // send with a source address the socket's cgroup does not own (EPERM)
	STAT_MAX,
};

// settings is the single entry of the config array. active selects the rule
// set (0 = the _a maps, 1 = the _b maps); one write switches sets.
struct settings {
	__u32 active;
	__u32 generation;
	__u64 ct_timeout_tcp_ns;
	__u64 ct_timeout_other_ns;
	__u32 l3_offset; // link header length of the device: 0 on TUN/WireGuard
	__u32 pad;
};

// ident_key is an LPM key: the remote address (network order) with
// prefixlen 32 for a host entry.
struct ident_key {
	__u32 prefixlen;
	__u32 addr;
};

// workload is the value of the workloads map, keyed by local overlay
// address (network order), and of the sites map, keyed by a site prefix
// (an ident_key with the prefix length): a site's entries share one index,
// numbered after the workloads', and identity 0 (site hosts have none).
struct workload {
	__u32 index;
	__u32 identity;
	__u8 allow_all[2]; // by enum dir
	__u8 monitor;      // 1: monitor mode, drops become would-deny passes
	__u8 pad;
};

// rule_key keys the rules hash: identity 0 holds the workload's Any ranges
// (identity 0 is "unknown", which never matches an identity rule).
struct rule_key {
	__u32 workload;
	__u32 identity;
	__u8 dir;
	__u8 proto;
	__u16 pad;
};

// cidr_key is an LPM key: prefixlen = 64 (workload, dir, proto, pad) +
// the prefix bits of addr.
struct cidr_key {
	__u32 prefixlen;
	__u32 workload;
	__u8 dir;
	__u8 proto;
	__u16 pad;
	__u32 addr;
};

// cgroup_workload is the value of the cgroups map, keyed by cgroup id (the
// inode of the cgroup v2 directory): the workload's overlay address
// (network order), which keys the workloads map of either rule set.
struct cgroup_workload {
	__u32 addr;
	__u32 pad;
};

// host is the single entry of the scope array: what the cgroup programs
// need to know of the agent that loaded them.
struct host {
	__u64 netns_cookie; // the agent's network namespace; 0: decide nothing
};

struct port_range {
	__u16 first;
	__u16 last;
};

// ports is an inclusive set of destination ports of one protocol.
struct ports {
	__u32 count;
	struct port_range r[MAX_RANGES];
};

// ct_key is a flow as seen on the wire (addresses and ports network order).
struct ct_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

// ct_val is one direction of a tracked flow: the entry of the opener's
// tuple (opener = 1) matches packets in the opener's direction, the entry of
// the reversed tuple (opener = 0) matches replies in the other direction.
struct ct_val {
	__u64 last_seen_ns;  // bpf_ktime_get_coarse_ns of the last packet
	__u32 generation;    // settings.generation of the set that allowed it
	__u8 dir;            // direction of the packets this entry matches
	__u8 opener;         // 1: the tuple of the packet that opened the flow
	__u8 pad[2];
};

// event reports a drop or a new allowed flow. Ports in host order.
struct event {
	__u64 time_ns;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 dir;
	__u8 verdict;
	__u8 reason;
	__u32 workload; // index in the active set; 0xffffffff if unknown
	__u32 remote_identity;
	__u32 set;
	__u32 len; // bytes of the packet (skb->len); 0 for connect/sendmsg
};

#define RULE_SET_MAPS(sfx)                                               \
	struct {                                                             \
		__uint(type, BPF_MAP_TYPE_HASH);                                 \
		__uint(max_entries, MAX_WORKLOADS);                              \
		__type(key, __u32);                                              \
		__type(value, struct workload);                                  \
	} workloads_##sfx SEC(".maps");                                      \
	struct {                                                             \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                             \
		__uint(max_entries, MAX_IDENTITIES);                             \
		__uint(map_flags, BPF_F_NO_PREALLOC);                            \
		__type(key, struct ident_key);                                   \
		__type(value, __u32);                                            \
	} identities_##sfx SEC(".maps");                                     \
	struct {                                                             \
		__uint(type, BPF_MAP_TYPE_HASH);                                 \
		__uint(max_entries, MAX_RULES);                                  \
		__uint(map_flags, BPF_F_NO_PREALLOC);                            \
		__type(key, struct rule_key);                                    \
		__type(value, struct ports);                                     \
	} rules_##sfx SEC(".maps");                                          \
	struct {                                                             \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                             \
		__uint(max_entries, MAX_RULES);                                  \
		__uint(map_flags, BPF_F_NO_PREALLOC);                            \
		__type(key, struct cidr_key);                                    \
		__type(value, struct ports);                                     \
	} cidrs_##sfx SEC(".maps");                                      \
	struct {                                                             \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                             \
		__uint(max_entries, MAX_SITE_CIDRS);                             \
		__uint(map_flags, BPF_F_NO_PREALLOC);                            \
		__type(key, struct ident_key);                                   \
		__type(value, struct workload);                                  \
	} sites_##sfx SEC(".maps");

RULE_SET_MAPS(a)
RULE_SET_MAPS(b)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct cgroup_workload);
} cgroups SEC(".maps");

// owners: the overlay addresses (network order) of workloads that have a
// cgroup, with one cgroup id that owns each.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CGROUPS);
	__type(key, __u32);
	__type(value, __u64);
} owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct host);
} scope SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_STATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_CT);
	__type(key, struct ct_key);
	__type(value, struct ct_val);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_BYTES);
} events SEC(".maps");

// Force BTF for the types bpf2go generates (-type).
const struct event *unused_event __attribute__((unused));
const struct ident_key *unused_ident_key __attribute__((unused));
const struct rule_key *unused_rule_key __attribute__((unused));
const struct cidr_key *unused_cidr_key __attribute__((unused));
const struct cgroup_workload *unused_cgroup_workload __attribute__((unused));
const enum reason *unused_reason __attribute__((unused));
const enum dir *unused_dir __attribute__((unused));
const enum verdict *unused_verdict __attribute__((unused));
const enum stat *unused_stat __attribute__((unused));
const struct host *unused_host __attribute__((unused));

// The two sets are separate maps; pick one per lookup.
#define SET_LOOKUP(set, name, key) \
	((set) ? bpf_map_lookup_elem(&name##_b, (key)) : bpf_map_lookup_elem(&name##_a, (key)))

struct pkt {
	__u32 saddr;
	__u32 daddr;
	__u16 sport; // network order
	__u16 dport; // network order
	__u8 proto;
	__u8 dir;
	__u32 workload;
	__u32 identity;
	__u32 set;
	__u32 len;
	__u8 monitor; // the local workload is in monitor mode
};

static __always_inline void count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &reason);
	if (c)
		*c += 1; // per-CPU: no atomics needed
}

static __always_inline void count_stat(__u32 stat, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &stat);
	if (c)
		*c += n;
}

static __always_inline void emit(const struct pkt *p, __u8 verdict, __u8 reason)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(REASON_EVENT_LOST);
		return;
	}
	e->time_ns = bpf_ktime_get_ns();
	e->saddr = p->saddr;
	e->daddr = p->daddr;
	e->sport = bpf_ntohs(p->sport);
	e->dport = bpf_ntohs(p->dport);
	e->proto = p->proto;
	e->dir = p->dir;
	e->verdict = verdict;
	e->reason = reason;
	e->workload = p->workload;
	e->remote_identity = p->identity;
	e->set = p->set;
	e->len = p->len;
	// Wake the reader only when a good part of the ring is waiting: it
	// also polls on a short deadline (enforce/ebpf), and a wake-up per
	// event would cost more than the event.
	__u64 waiting = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(e, waiting >= EVENT_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

// monitor_pass lets through a packet of a monitor-mode workload that would
// be dropped for reason, tracking a TCP/UDP/SCTP flow denied by policy,
// seen mid-stream or revoked, so that its later packets and replies pass
// as tracked.
static __always_inline int monitor_pass(const struct pkt *p, __u8 reason)
{
	__u32 zero = 0;
	struct settings *cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && (reason == REASON_DROP_NO_RULE || reason == REASON_DROP_NOT_SYN || reason == REASON_DROP_REVOKED)) {
		struct ct_key k = {
			.saddr = p->saddr, .daddr = p->daddr, .sport = p->sport, .dport = p->dport, .proto = p->proto,
		};
		struct ct_val v = {
			.last_seen_ns = bpf_ktime_get_coarse_ns(), .generation = cfg->generation, .dir = p->dir, .opener = 1,
		};
		bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY);
		k.saddr = p->daddr, k.daddr = p->saddr, k.sport = p->dport, k.dport = p->sport;
		v.dir = p->dir == DIR_INGRESS ? DIR_EGRESS : DIR_INGRESS;
		v.opener = 0;
		bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY);
		count_stat(STAT_CT_CREATED, 2);
	}
	count(REASON_ALLOW_MONITOR);
	emit(p, VERDICT_WOULD_DENY, reason);
	return VERDICT_ALLOW;
}

static __always_inline int drop(const struct pkt *p, __u8 reason)
{
	if (p->monitor)
		return monitor_pass(p, reason);
	count(reason);
	emit(p, VERDICT_DROPPED, reason);
	return VERDICT_DROP;
}

static __always_inline int ports_contain(const struct ports *ps, __u16 port)
{
	if (!ps)
		return 0;
	for (int i = 0; i < MAX_RANGES; i++) {
		if (i >= ps->count)
			break;
		if (ps->r[i].first <= port && port <= ps->r[i].last)
			return 1;
	}
	return 0;
}

// policy returns the allow reason for a new flow, or REASON_DROP_NO_RULE.
static __always_inline __u8 policy(const struct pkt *p, const struct workload *wl, __u32 remote)
{
	__u32 set = p->set;
	__u16 port = bpf_ntohs(p->dport);

	if (wl->allow_all[p->dir & 1])
		return REASON_ALLOW_ALL;

	struct rule_key rk = {
		.workload = wl->index,
		.identity = 0,
		.dir = p->dir,
		.proto = p->proto,
	};
	if (ports_contain(SET_LOOKUP(set, rules, &rk), port))
		return REASON_ALLOW_ANY;

	if (p->identity != 0) {
		rk.identity = p->identity;
		if (ports_contain(SET_LOOKUP(set, rules, &rk), port))
			return REASON_ALLOW_IDENTITY;
	}

	struct cidr_key ck = {
		.prefixlen = 64 + 32,
		.workload = wl->index,
		.dir = p->dir,
		.proto = p->proto,
		.addr = remote,
	};
	if (ports_contain(SET_LOOKUP(set, cidrs, &ck), port))
		return REASON_ALLOW_CIDR;
	return REASON_DROP_NO_RULE;
}

// load copies len bytes at offset off of the network header into dst. The
// fast path reads the linear packet data directly (the network header is at
// settings.l3_offset); headers outside the linear part (or a wrong offset)
// fall back to bpf_skb_load_bytes_relative. Returns < 0 when the packet is
// too short.
static __always_inline int load(struct __sk_buff *skb, __u32 l3off, __u32 off, void *dst, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	void *at = data + ((l3off + off) & 0x7f);
	if (at + len <= end) {
		__builtin_memcpy(dst, at, len);
		return 0;
	}
	return bpf_skb_load_bytes_relative(skb, off, dst, len, BPF_HDR_START_NET);
}

// lookup_local fills p->identity and p->workload for a packet whose local
// address is local and remote address remote, in p->set; it returns the
// local workload, else the rules of the site whose prefix holds local (the
// longest; on a gateway, for site hosts), or NULL when local is neither.
static __always_inline struct workload *lookup_local(struct pkt *p, __u32 local, __u32 remote)
{
	struct ident_key ik = {.prefixlen = 32, .addr = remote};
	__u32 *id = SET_LOOKUP(p->set, identities, &ik);
	if (id)
		p->identity = *id;
	struct workload *wl = SET_LOOKUP(p->set, workloads, &local);
	if (!wl) {
		struct ident_key sk = {.prefixlen = 32, .addr = local};
		wl = SET_LOOKUP(p->set, sites, &sk);
	}
	if (wl) {
		p->workload = wl->index;
		p->monitor = wl->monitor;
	}
	return wl;
}

static __always_inline __u8 other_dir(__u8 dir)
{
	return dir == DIR_INGRESS ? DIR_EGRESS : DIR_INGRESS;
}

// recheck decides a tracked flow again after a rule set switch: the flow
// as it was opened (the packet itself or, for a reply, the packet
// reversed) against the active set. It returns the allow reason or a drop
// reason.
static __always_inline __u8 recheck(const struct pkt *cur, const struct ct_val *ct)
{
	struct pkt o = {.proto = cur->proto, .workload = 0xffffffff, .set = cur->set};
	if (ct->opener) {
		o.saddr = cur->saddr, o.daddr = cur->daddr, o.sport = cur->sport, o.dport = cur->dport;
		o.dir = cur->dir;
	} else {
		o.saddr = cur->daddr, o.daddr = cur->saddr, o.sport = cur->dport, o.dport = cur->sport;
		o.dir = other_dir(cur->dir);
	}
	__u32 local = o.dir == DIR_INGRESS ? o.daddr : o.saddr;
	__u32 remote = o.dir == DIR_INGRESS ? o.saddr : o.daddr;
	struct workload *wl = lookup_local(&o, local, remote);
	if (!wl)
		return REASON_DROP_UNKNOWN_LOCAL;
	return policy(&o, wl, remote);
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		count(REASON_ALLOW_NOT_IPV4);
		return VERDICT_ALLOW;
	}

	struct pkt p = {.dir = dir, .workload = 0xffffffff, .len = skb->len};
	__u32 zero = 0;
	struct settings *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return drop(&p, REASON_DROP_MALFORMED);
	p.set = cfg->active & 1;
	__u32 l3off = cfg->l3_offset;

	struct iphdr ip;
	if (load(skb, l3off, 0, &ip, sizeof(ip)) < 0)
		return drop(&p, REASON_DROP_MALFORMED);
	p.saddr = ip.saddr;
	p.daddr = ip.daddr;
	p.proto = ip.protocol;
	if (ip.version != 4 || ip.ihl < 5)
		return drop(&p, REASON_DROP_MALFORMED);

	__u32 local = dir == DIR_INGRESS ? ip.daddr : ip.saddr;
	__u32 remote = dir == DIR_INGRESS ? ip.saddr : ip.daddr;

	if (ip.frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		lookup_local(&p, local, remote);
		return drop(&p, REASON_DROP_FRAGMENT);
	}

	__u32 l4 = ip.ihl * 4;
	__u8 tcp_flags = 0;
	switch (ip.protocol) {
	case IPPROTO_ICMP: {
		__u8 icmp[2];
		if (load(skb, l3off, l4, icmp, sizeof(icmp)) < 0)
			return drop(&p, REASON_DROP_MALFORMED);
		if (!lookup_local(&p, local, remote))
			return drop(&p, REASON_DROP_UNKNOWN_LOCAL);
		// Echo request (8) / reply (0), code 0, with a remote in the view.
		if ((icmp[0] == 8 || icmp[0] == 0) && icmp[1] == 0 && p.identity != 0) {
			count(REASON_ALLOW_ICMP_ECHO);
			return VERDICT_ALLOW;
		}
		return drop(&p, REASON_DROP_ICMP);
	}
	case IPPROTO_TCP: {
		__u8 th[14];
		if (load(skb, l3off, l4, th, sizeof(th)) < 0)
			return drop(&p, REASON_DROP_MALFORMED);
		__builtin_memcpy(&p.sport, &th[0], 2);
		__builtin_memcpy(&p.dport, &th[2], 2);
		tcp_flags = th[13];
		break;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__u16 ports[2];
		if (load(skb, l3off, l4, ports, sizeof(ports)) < 0)
			return drop(&p, REASON_DROP_MALFORMED);
		p.sport = ports[0];
		p.dport = ports[1];
		break;
	}
	default:
		lookup_local(&p, local, remote);
		return drop(&p, REASON_DROP_PROTOCOL);
	}

	// Connection tracking, first: a flow has one entry per direction
	// (opener and reply), so a packet of a tracked flow costs one lookup.
	// Entries remember the rule set generation that allowed the flow;
	// after a switch the flow is decided again, once, so a policy change
	// also ends the established flows it no longer allows.
	__u64 now = bpf_ktime_get_coarse_ns();
	__u64 timeout = ip.protocol == IPPROTO_TCP ? cfg->ct_timeout_tcp_ns : cfg->ct_timeout_other_ns;
	if (timeout == 0)
		timeout = ip.protocol == IPPROTO_TCP ? DEFAULT_CT_TCP_NS : DEFAULT_CT_OTHER_NS;

	struct ct_key fwd = {
		.saddr = p.saddr, .daddr = p.daddr, .sport = p.sport, .dport = p.dport, .proto = p.proto,
	};
	struct ct_key rev = {
		.saddr = p.daddr, .daddr = p.saddr, .sport = p.dport, .dport = p.sport, .proto = p.proto,
	};
	struct ct_val *ct = bpf_map_lookup_elem(&conntrack, &fwd);
	if (!ct || ct->dir != dir || now - ct->last_seen_ns > timeout) {
		// This direction's entry is gone (evicted, or idle while the other
		// direction was busy): find the flow by its other entry.
		struct ct_val *other = bpf_map_lookup_elem(&conntrack, &rev);
		if (other && other->dir != dir && now - other->last_seen_ns <= timeout) {
			struct ct_val v = {
				.last_seen_ns = now, .generation = other->generation,
				.dir = dir, .opener = !other->opener,
			};
			bpf_map_update_elem(&conntrack, &fwd, &v, BPF_ANY);
			count_stat(STAT_CT_CREATED, 1);
			count_stat(STAT_CT_RECREATED, 1);
			ct = bpf_map_lookup_elem(&conntrack, &fwd);
		} else {
			ct = 0;
		}
	}
	if (ct) {
		if (ct->generation != cfg->generation) {
			__u8 reason = recheck(&p, ct);
			if (reason >= REASON_DROP_NO_RULE) {
				bpf_map_delete_elem(&conntrack, &fwd);
				bpf_map_delete_elem(&conntrack, &rev);
				lookup_local(&p, local, remote);
				return drop(&p, REASON_DROP_REVOKED);
			}
			ct->generation = cfg->generation;
		}
		if (ct->last_seen_ns != now) // coarse time: once per tick, not per packet
			ct->last_seen_ns = now;
		count(REASON_ALLOW_TRACKED);
		return VERDICT_ALLOW;
	}

	struct workload *wl = lookup_local(&p, local, remote);
	if (!wl)
		return drop(&p, REASON_DROP_UNKNOWN_LOCAL);

	// A new TCP flow starts with a SYN without ACK. Anything else is a
	// packet of a flow that has no live entry: never allowed, idle past
	// its timeout, or evicted from the full LRU map (both entries).
	if (ip.protocol == IPPROTO_TCP && (tcp_flags & 0x12) != 0x02) {
		count_stat(STAT_CT_MISS, 1);
		return drop(&p, REASON_DROP_NOT_SYN);
	}

	__u8 reason = policy(&p, wl, remote);
	if (reason == REASON_DROP_NO_RULE)
		return drop(&p, reason);

	struct ct_val v = {.last_seen_ns = now, .generation = cfg->generation, .dir = dir, .opener = 1};
	bpf_map_update_elem(&conntrack, &fwd, &v, BPF_ANY);
	v.dir = other_dir(dir);
	v.opener = 0;
	bpf_map_update_elem(&conntrack, &rev, &v, BPF_ANY);
	count_stat(STAT_CT_CREATED, 2);
	count(reason);
	emit(&p, VERDICT_ALLOWED, reason);
	return VERDICT_ALLOW;
}

SEC("tcx/ingress")
int latch_ingress(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}

SEC("tcx/egress")
int latch_egress(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

// may_use reports whether the calling task may use addr (network order)
// as a socket's local address: always outside the overlay, for the
// wildcard address and outside the agent's network namespace; in it, a
// task of a workload cgroup only its workload's address, any other task
// any address but those of workloads that have a cgroup.
static __always_inline int may_use(struct bpf_sock_addr *ctx, __u32 addr)
{
	if (addr == 0 || (bpf_ntohl(addr) & OVERLAY_MASK) != OVERLAY_NET)
		return 1;
	__u32 zero = 0;
	struct host *h = bpf_map_lookup_elem(&scope, &zero);
	if (!h || h->netns_cookie == 0 || bpf_get_netns_cookie(ctx) != h->netns_cookie)
		return 1;
	__u64 cgid = bpf_get_current_cgroup_id();
	struct cgroup_workload *cw = bpf_map_lookup_elem(&cgroups, &cgid);
	if (cw)
		return cw->addr == addr;
	return bpf_map_lookup_elem(&owners, &addr) == 0;
}

// sock_hook decides a connect (connect = 1) or sendmsg of a socket; it
// returns 1 to let the call proceed and 0 to fail it with EPERM.
static __always_inline int sock_hook(struct bpf_sock_addr *ctx, int connect)
{
	// The source a send names (IP_PKTINFO, or the bound address), also
	// on a connected socket (whose user_family is AF_UNSPEC here).
	if (!connect && !may_use(ctx, ctx->msg_src_ip4)) {
		count_stat(STAT_SOURCE_REFUSED, 1);
		return 0;
	}
	if (ctx->user_family != AF_INET)
		return 1;
	__u32 daddr = ctx->user_ip4;
	if ((bpf_ntohl(daddr) & OVERLAY_MASK) != OVERLAY_NET)
		return 1;

	__u64 cgid = bpf_get_current_cgroup_id();
	struct cgroup_workload *cw = bpf_map_lookup_elem(&cgroups, &cgid);
	if (!cw)
		return 1;
	__u32 local = cw->addr;

	__u32 zero = 0;
	struct settings *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return 1;
	struct pkt p = {
		.saddr = local,
		.daddr = daddr,
		.dport = (__u16)ctx->user_port,
		.dir = DIR_EGRESS,
		.workload = 0xffffffff,
		.set = cfg->active & 1,
	};
	// A workload that left the active rule set: latch_egress decides.
	struct workload *wl = SET_LOOKUP(p.set, workloads, &local);
	if (!wl)
		return 1;
	p.workload = wl->index;

	// Source address = the workload's, unless the socket chose one.
	struct bpf_sock *sk = ctx->sk;
	if (sk && sk->src_ip4 == 0) {
		if (connect) {
			struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = local};
			bpf_bind(ctx, (struct sockaddr *)&sa, sizeof(sa));
		} else {
			ctx->msg_src_ip4 = local;
		}
	}

	switch (ctx->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		p.proto = ctx->protocol;
		break;
	default:
		return 1; // ICMP and others: latch_egress decides
	}

	struct ident_key ik = {.prefixlen = 32, .addr = daddr};
	__u32 *id = SET_LOOKUP(p.set, identities, &ik);
	if (id)
		p.identity = *id;

	if (policy(&p, wl, daddr) != REASON_DROP_NO_RULE)
		return 1;
	if (wl->monitor) {
		count(REASON_ALLOW_MONITOR);
		emit(&p, VERDICT_WOULD_DENY, REASON_DROP_CONNECT_DENIED);
		return 1;
	}
	count(REASON_DROP_CONNECT_DENIED);
	emit(&p, VERDICT_DROPPED, REASON_DROP_CONNECT_DENIED);
	return 0;
}

SEC("cgroup/connect4")
int latch_connect4(struct bpf_sock_addr *ctx)
{
	return sock_hook(ctx, 1);
}

SEC("cgroup/sendmsg4")
int latch_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock_hook(ctx, 0);
}

// latch_bind4 refuses (EPERM) a bind to an overlay address the calling
// task may not use (may_use).
SEC("cgroup/bind4")
int latch_bind4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family != AF_INET)
		return 1;
	if (may_use(ctx, ctx->user_ip4))
		return 1;
	count_stat(STAT_BIND_REFUSED, 1);
	return 0;
}
