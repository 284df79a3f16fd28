/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The one header shared by the XDP program (voxedge.bpf.c, compiled with clang -target bpf)
 * and Swift (imported through the CXDP module, Sources/CXDP/shim.h). Every struct a map
 * holds is defined here once, with fixed-width fields, no padding and a size assertion,
 * so the kernel side and the engine cannot disagree about a layout.
 *
 * Addresses are always 16 bytes in network byte order; IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d, RFC 4291 §2.5.5.2), as VoxWire.IPAddress holds it. Ports inside map
 * keys are in network byte order (copied straight from the UDP header); ports in the
 * configuration are in host byte order (written by people and by Swift).
 */
#ifndef VOXEDGE_SHARED_H
#define VOXEDGE_SHARED_H

#include <linux/types.h>

/* How many media ports the configuration can name (the engine normally uses one). */
#define VOX_MAX_MEDIA_PORTS 8

/* Default map sizes; the loader may change them before the program is loaded. */
#define VOX_DEFAULT_MAX_FLOWS 65536
#define VOX_DEFAULT_MAX_BLOCKLIST 16384
#define VOX_DEFAULT_MAX_STUN_SOURCES 65536
#define VOX_DEFAULT_MAX_QUEUES 64

/* Map names as libbpf and bpftool see them (at most 15 characters). */
#define VOX_PROG_NAME "voxedge_xdp"
#define VOX_MAP_CONFIG "vox_config"
#define VOX_MAP_FLOWS "vox_flows"
#define VOX_MAP_BLOCKLIST "vox_blocklist"
#define VOX_MAP_STUN "vox_stun"
#define VOX_MAP_XSKS "vox_xsks"
#define VOX_MAP_COUNTERS "vox_counters"
#define VOX_MAP_FILTER "vox_filter"

/* The flow filter (vox_filter): one bit per slot, set while an admitted 5-tuple's keyed
 * hash lands there. The program tests one bit per RTP/RTCP packet instead of looking the
 * hash map's bucket and element up: measured under load, those cost 170-240 ns a packet in
 * cache and TLB misses (the worker's sessions evict them), where a bitmap of a few pages
 * stays resident. DTLS and STUN still look the exact map up. A slot shared with an admitted
 * flow lets an unadmitted one's RTP through (probability about flows / slots): the worker's
 * exact lookup drops it (unknownFlow). The engine uses the first (mask + 1) slots. */
#define VOX_FILTER_SLOTS (1u << 20)

/* An IPv6 address, or an IPv4-mapped IPv4 address, in network byte order. Four 32-bit
 * words rather than two 64-bit ones keep the alignment at 4, so keys embedding it have
 * no padding bytes (padding in a hash key would be hashed as garbage). */
struct vox_addr {
	__u32 words[4];
};
_Static_assert(sizeof(struct vox_addr) == 16, "vox_addr layout");

/* Key of `vox_flows`: a UDP 5-tuple seen from the engine (remote = packet source).
 * The protocol is always UDP, so it is not stored. */
struct vox_flow_key {
	struct vox_addr remote_addr;
	struct vox_addr local_addr;
	__u16 remote_port; /* network byte order */
	__u16 local_port;  /* network byte order */
};
_Static_assert(sizeof(struct vox_flow_key) == 36, "vox_flow_key layout");

/* Value of `vox_flows`: who admitted the flow, for bpftool readers and later relay mode.
 * The XDP program only tests presence. */
struct vox_flow_value {
	__u32 session; /* the engine's session slot */
	__u32 worker;  /* the worker (queue) that owns the session */
};
_Static_assert(sizeof(struct vox_flow_value) == 8, "vox_flow_value layout");

/* Key of `vox_blocklist` (an LPM trie): prefix length in bits over the 16-byte form, so
 * an IPv4 /24 is prefix_len 96 + 24. The kernel requires the length first. */
struct vox_lpm_key {
	__u32 prefix_len;
	struct vox_addr addr;
};
_Static_assert(sizeof(struct vox_lpm_key) == 20, "vox_lpm_key layout");

/* Value of `vox_stun`: a token bucket per source address for STUN from flows that are
 * not admitted yet. Tokens are kept in nano-tokens (1 token = 1e9) so refilling needs a
 * multiplication only: elapsed_ns * rate_per_sec. */
struct vox_stun_bucket {
	__u64 nanotokens;
	__u64 last_ns;
};
_Static_assert(sizeof(struct vox_stun_bucket) == 16, "vox_stun_bucket layout");

/* Value of `vox_filter` (a one-entry array, mmapable: the engine writes it in place with
 * atomics, no system call per admission). The program reads `bits` only; `counts` (how many
 * admitted 5-tuples share each slot, so one leaving clears nothing another needs) is the
 * engine's. */
struct vox_filter {
	__u64 bits[VOX_FILTER_SLOTS / 64];
	__u8 counts[VOX_FILTER_SLOTS];
};

/* The filter slot of a 5-tuple: a multiplicative hash over the key's nine words, keyed with
 * a seed chosen at load (so nobody outside can aim at a slot), masked to the slots in use.
 * One definition for the program and the engine (Swift imports this header). */
static inline __u32 vox_flow_filter_slot(const struct vox_flow_key *k, __u64 seed, __u32 mask)
{
	const __u64 m = 0x9e3779b97f4a7c15ull;
	__u64 h = seed;

	h = (h ^ k->remote_addr.words[0]) * m;
	h = (h ^ k->remote_addr.words[1]) * m;
	h = (h ^ k->remote_addr.words[2]) * m;
	h = (h ^ k->remote_addr.words[3]) * m;
	h = (h ^ k->local_addr.words[0]) * m;
	h = (h ^ k->local_addr.words[1]) * m;
	h = (h ^ k->local_addr.words[2]) * m;
	h = (h ^ k->local_addr.words[3]) * m;
	h = (h ^ ((__u32)k->remote_port | ((__u32)k->local_port << 16))) * m;
	h ^= h >> 32;
	return (__u32)h & mask & (VOX_FILTER_SLOTS - 1);
}

#ifndef __bpf__
/* The engine's side of the filter (userspace only). */
/* Moves one flow-filter slot's count (bpf/voxedge_shared.h, `vox_filter`) up or down and
 * keeps its bit equal to (count != 0), atomically: workers admit and forget concurrently.
 * The bit is set after a count leaves 0; after a count reaches 0 the bit is cleared and
 * the count read again, so a concurrent admission into the slot re-sets it (whichever order
 * the two run in, the bit ends set while any count is). A count that reached 255 stays for
 * good (the slot only ever lets more through, which the workers' exact lookup catches). */
static inline void vox_filter_count(struct vox_filter *filter, __u32 slot, int up) {
	__u8 *count = &filter->counts[slot];
	__u64 *word = &filter->bits[slot >> 6];
	__u64 bit = 1ull << (slot & 63);
	__u8 old = __atomic_load_n(count, __ATOMIC_SEQ_CST), next;
	do {
		if (old == 255 || (!up && old == 0)) return;
		next = up ? (__u8)(old + 1) : (__u8)(old - 1);
	} while (!__atomic_compare_exchange_n(count, &old, next, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
	if (up) {
		__atomic_fetch_or(word, bit, __ATOMIC_SEQ_CST);
	} else if (next == 0) {
		__atomic_fetch_and(word, ~bit, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(count, __ATOMIC_SEQ_CST) != 0) __atomic_fetch_or(word, bit, __ATOMIC_SEQ_CST);
	}
}

/* One flow-filter slot's count, and whether its bit (what the program reads) is set. */
static inline __u8 vox_filter_read(const struct vox_filter *filter, __u32 slot, int *bit) {
	*bit = (int)((__atomic_load_n(&filter->bits[slot >> 6], __ATOMIC_SEQ_CST) >> (slot & 63)) & 1);
	return __atomic_load_n(&filter->counts[slot], __ATOMIC_SEQ_CST);
}
#endif

/* `vox_config` flags. */
enum vox_config_flags {
	/* Drop traffic to the backend port range unless its 5-tuple is admitted (the
	 * default the engine sets); without it such traffic goes to the sockets unchecked. */
	VOX_CFG_BACKEND_REQUIRE_ADMIT = 1 << 0,
};

/* The single entry of `vox_config`. All zero (the state after load) matches no port, so
 * the program passes everything until the engine configures it. */
struct vox_config {
	__u16 media_ports[VOX_MAX_MEDIA_PORTS]; /* host byte order; 0 = unused slot */
	__u16 backend_port_min;                 /* host byte order, inclusive; 0 = no range */
	__u16 backend_port_max;                 /* host byte order, inclusive */
	__u32 flags;                            /* enum vox_config_flags */
	__u32 stun_rate_per_sec;                /* new-flow STUN per source; 0 = none allowed */
	__u32 stun_burst;                       /* bucket depth in packets */
	__u32 filter_mask;                      /* vox_filter slots in use - 1 (a power of two - 1); 0 = filter off */
	__u32 reserved;                         /* zero */
	__u64 filter_seed;                      /* vox_flow_filter_slot's key */
};
_Static_assert(sizeof(struct vox_config) == 48, "vox_config layout");

/* Upper bound for stun_rate_per_sec: keeps elapsed_ns * rate inside 64 bits for the
 * longest refill the program computes (VOX_STUN_MAX_REFILL_NS). */
#define VOX_STUN_MAX_RATE 1000000u
#define VOX_STUN_MAX_REFILL_NS 10000000000ull

/* Indices of `vox_counters` (a per-CPU array of __u64): one counter per verdict and
 * reason. Every packet the program sees increments exactly one of them. */
enum vox_counter {
	VOX_CNT_PASS_NOT_IP = 0,     /* not IPv4/IPv6 (ARP, LLDP, …) */
	VOX_CNT_PASS_NOT_UDP,        /* IP but not UDP (ICMP, TCP, …) */
	VOX_CNT_PASS_OTHER_PORT,     /* UDP to a port that is not ours (DNS, signaling, …) */
	VOX_CNT_PASS_TRUNCATED,      /* headers cut short or malformed: the kernel decides */
	VOX_CNT_PASS_FRAGMENT,       /* IP fragment: reassembly is the kernel's */
	VOX_CNT_PASS_NO_SOCKET,      /* ours, but no AF_XDP socket on this queue: to the kernel socket */
	VOX_CNT_REDIRECT,            /* ours: redirected to XSKMAP[rx_queue_index] */
	VOX_CNT_DROP_BLOCKLIST,      /* ours, source in the blocklist */
	VOX_CNT_DROP_UNADMITTED,     /* DTLS/RTP (or backend leg) from a 5-tuple not admitted */
	VOX_CNT_DROP_STUN_RATE,      /* new-flow STUN beyond the source's token bucket */
	VOX_CNT_DROP_INVALID,        /* media port, payload neither STUN, DTLS nor RTP/RTCP */
	VOX_CNT__COUNT
};

#endif /* VOXEDGE_SHARED_H */
