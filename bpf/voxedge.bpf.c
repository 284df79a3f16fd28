// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * VoxEdge's XDP program: steers media flows to the engine's AF_XDP sockets and passes
 * everything else to the kernel.
 *
 *   not IP, not UDP, fragment, truncated, other port ─────────────▶ XDP_PASS
 *   media port or backend-leg port range:
 *     source in vox_blocklist ──────────────────────────────────────▶ XDP_DROP
 *     backend leg: flow filter bit set (or admission not required) ──▶ steer
 *     media port, first payload byte (RFC 7983):
 *       128..191 RTP, RTCP: flow filter bit set ─────────────────────▶ steer, else DROP
 *       0..3     STUN: admitted (vox_flows), or the source's bucket ──▶ steer, else DROP
 *       20..63   DTLS: admitted (vox_flows) ─────────────────────────▶ steer, else DROP
 *       anything else, or no payload ───────────────────────────────▶ XDP_DROP
 *   steer = bpf_redirect_map(vox_xsks, rx_queue_index, XDP_PASS): XDP_REDIRECT when a
 *           socket is bound on this queue, else XDP_PASS to the kernel UDP socket that
 *           holds the media port (the engine's fallback path).
 *
 * Every packet increments exactly one per-CPU counter in vox_counters (enum vox_counter),
 * so the counters both account for all traffic and tell a test which branch was taken:
 * "steered" is VOX_CNT_REDIRECT or VOX_CNT_PASS_NO_SOCKET.
 */
#include "parse.h"

/* The single configuration entry (struct vox_config): media ports, backend port range,
 * STUN rate. All zero after load, which matches nothing: the program passes everything
 * until the engine has configured it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vox_config);
} vox_config SEC(".maps");

/* Admitted 5-tuples, filled by the workers after a valid STUN check (client leg) or when
 * a session is placed (backend leg). Preallocated: no allocation on the packet path. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VOX_DEFAULT_MAX_FLOWS);
	__type(key, struct vox_flow_key);
	__type(value, struct vox_flow_value);
} vox_flows SEC(".maps");

/* Source prefixes to drop on our ports (longest prefix match over the 16-byte form). The
 * kernel requires BPF_F_NO_PREALLOC for LPM tries. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, VOX_DEFAULT_MAX_BLOCKLIST);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vox_lpm_key);
	__type(value, __u32);
} vox_blocklist SEC(".maps");

/* Token buckets for STUN from sources that have no admitted flow yet. LRU, so a flood of
 * spoofed sources evicts old buckets instead of filling the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VOX_DEFAULT_MAX_STUN_SOURCES);
	__type(key, struct vox_addr);
	__type(value, struct vox_stun_bucket);
} vox_stun SEC(".maps");

/* AF_XDP sockets by NIC queue: the engine's worker for queue q puts its socket at q. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, VOX_DEFAULT_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} vox_xsks SEC(".maps");

/* Admitted 5-tuples by keyed hash (struct vox_filter, voxedge_shared.h): the cheap test of
 * RTP and RTCP. Written by the engine, through its own mapping, as vox_flows changes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct vox_filter);
} vox_filter SEC(".maps");

/* One counter per verdict and reason (enum vox_counter), per CPU: no atomics needed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VOX_CNT__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} vox_counters SEC(".maps");

#define VOX_NANO 1000000000ull

static __always_inline int vox_count(__u32 counter, int verdict)
{
	__u64 *value = bpf_map_lookup_elem(&vox_counters, &counter);

	if (value)
		*value += 1;
	return verdict;
}

static __always_inline int vox_is_media_port(const struct vox_config *cfg, __u16 port)
{
#pragma unroll
	for (int i = 0; i < VOX_MAX_MEDIA_PORTS; i++) {
		if (cfg->media_ports[i] != 0 && cfg->media_ports[i] == port)
			return 1;
	}
	return 0;
}

/* Takes one token from the source's bucket. Buckets are shared between CPUs without a
 * lock: two CPUs racing on one bucket can each take the same token, so a source gets at
 * most one extra packet per CPU, which is fine for a flood guard. */
static __always_inline int vox_stun_allow(const struct vox_config *cfg, const struct vox_addr *src)
{
	__u64 rate = cfg->stun_rate_per_sec;
	__u64 burst = (__u64)cfg->stun_burst * VOX_NANO;
	__u64 now, elapsed, tokens;
	struct vox_stun_bucket *bucket;

	if (rate == 0)
		return 1; /* limiter off */
	if (rate > VOX_STUN_MAX_RATE)
		rate = VOX_STUN_MAX_RATE;
	if (burst < VOX_NANO)
		burst = VOX_NANO;
	now = bpf_ktime_get_ns();
	bucket = bpf_map_lookup_elem(&vox_stun, src);
	if (!bucket) {
		struct vox_stun_bucket fresh = { .nanotokens = burst - VOX_NANO, .last_ns = now };

		bpf_map_update_elem(&vox_stun, src, &fresh, BPF_ANY);
		return 1;
	}
	elapsed = now - bucket->last_ns;
	if (elapsed > VOX_STUN_MAX_REFILL_NS)
		elapsed = VOX_STUN_MAX_REFILL_NS;
	tokens = bucket->nanotokens + elapsed * rate;
	if (tokens > burst)
		tokens = burst;
	bucket->last_ns = now;
	if (tokens < VOX_NANO) {
		bucket->nanotokens = tokens;
		return 0;
	}
	bucket->nanotokens = tokens - VOX_NANO;
	return 1;
}

/* Whether `flow` may be admitted: its filter slot counts an admitted 5-tuple. With the
 * filter off (mask 0, an engine that predates it or a test), the exact map decides. */
static __always_inline int vox_filter_admits(const struct vox_config *cfg, const struct vox_flow_key *flow)
{
	const struct vox_filter *filter;
	__u32 zero = 0, slot;

	if (cfg->filter_mask == 0)
		return bpf_map_lookup_elem(&vox_flows, flow) != NULL;
	filter = bpf_map_lookup_elem(&vox_filter, &zero);
	if (!filter)
		return 0;
	slot = vox_flow_filter_slot(flow, cfg->filter_seed, cfg->filter_mask);
	return (filter->bits[slot >> 6] >> (slot & 63)) & 1;
}

/* To the socket of this queue, or to the kernel when there is none. */
static __always_inline int vox_steer(struct xdp_md *ctx)
{
	long verdict = bpf_redirect_map(&vox_xsks, ctx->rx_queue_index, XDP_PASS);

	return vox_count(verdict == XDP_REDIRECT ? VOX_CNT_REDIRECT : VOX_CNT_PASS_NO_SOCKET,
			 (int)verdict);
}

SEC("xdp")
int voxedge_xdp(struct xdp_md *ctx)
{
	struct vox_packet pkt = {};
	struct vox_flow_key flow;
	struct vox_lpm_key source;
	const struct vox_config *cfg;
	__u32 zero = 0;
	int reason, admitted, media;
	__u16 dport;

	reason = vox_parse(ctx, &pkt);
	if (reason >= 0)
		return vox_count(reason, XDP_PASS);

	cfg = bpf_map_lookup_elem(&vox_config, &zero);
	if (!cfg)
		return vox_count(VOX_CNT_PASS_OTHER_PORT, XDP_PASS);
	dport = bpf_ntohs(pkt.dport);
	media = vox_is_media_port(cfg, dport);
	if (!media && !(cfg->backend_port_min != 0 && dport >= cfg->backend_port_min &&
			dport <= cfg->backend_port_max))
		return vox_count(VOX_CNT_PASS_OTHER_PORT, XDP_PASS);

	source.prefix_len = 128;
	source.addr = pkt.src;
	if (bpf_map_lookup_elem(&vox_blocklist, &source))
		return vox_count(VOX_CNT_DROP_BLOCKLIST, XDP_DROP);

	flow.remote_addr = pkt.src;
	flow.local_addr = pkt.dst;
	flow.remote_port = pkt.sport;
	flow.local_port = pkt.dport;

	if (!media) {
		/* Backend leg: its own protocol, so no RFC 7983 classes; the 5-tuple decides (the
		 * filter here: it is the bulk of the traffic, and the worker checks the source). */
		if ((cfg->flags & VOX_CFG_BACKEND_REQUIRE_ADMIT) && !vox_filter_admits(cfg, &flow))
			return vox_count(VOX_CNT_DROP_UNADMITTED, XDP_DROP);
		return vox_steer(ctx);
	}

	if (pkt.first_byte < 0)
		return vox_count(VOX_CNT_DROP_INVALID, XDP_DROP);
	if (pkt.first_byte >= 128 && pkt.first_byte <= 191) {
		/* RTP, RTCP: only on a 5-tuple a valid STUN check has admitted, by the filter. */
		if (vox_filter_admits(cfg, &flow))
			return vox_steer(ctx);
		return vox_count(VOX_CNT_DROP_UNADMITTED, XDP_DROP);
	}
	admitted = bpf_map_lookup_elem(&vox_flows, &flow) != NULL;
	if (pkt.first_byte <= 3) {
		/* STUN: consent checks of admitted flows always; new flows within the rate. */
		if (admitted || vox_stun_allow(cfg, &pkt.src))
			return vox_steer(ctx);
		return vox_count(VOX_CNT_DROP_STUN_RATE, XDP_DROP);
	}
	if (pkt.first_byte >= 20 && pkt.first_byte <= 63) {
		/* DTLS (a handshake's few datagrams): the exact 5-tuple, from vox_flows. */
		if (admitted)
			return vox_steer(ctx);
		return vox_count(VOX_CNT_DROP_UNADMITTED, XDP_DROP);
	}
	return vox_count(VOX_CNT_DROP_INVALID, XDP_DROP);
}

char _license[] SEC("license") = "Dual BSD/GPL";
