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
};
_Static_assert(sizeof(struct vox_config) == 32, "vox_config layout");

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
