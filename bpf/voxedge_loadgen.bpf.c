// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The load generator's return counter, attached to the generator's veth: what the engine
 * forwards to the "backend" (an address that lives behind this veth, afxdp-ref's layout)
 * is counted and dropped here, before any skb exists, so counting costs the generator's
 * core almost nothing. Everything else (ARP, …) goes to the kernel.
 *
 *   IPv4 UDP to backend_addr, port in [port_low, port_high] ──▶ count, XDP_DROP
 *   anything else ─────────────────────────────────────────────▶ XDP_PASS
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "voxedge_loadgen.h"

/* The single configuration entry; all zero after load, which matches nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vox_lg_config);
} vox_lg_config SEC(".maps");

/* enum vox_lg_counter, per CPU: no atomics on the packet path. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VOX_LG_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} vox_lg_counters SEC(".maps");

static __always_inline void vox_lg_add(__u32 counter, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&vox_lg_counters, &counter);

	if (value)
		*value += n;
}

static __always_inline int vox_lg_pass(void)
{
	vox_lg_add(VOX_LG_PASSED, 1);
	return XDP_PASS;
}

SEC("xdp")
int voxedge_lg_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	struct vox_lg_config *config;
	__u32 zero = 0;
	__u16 port;
	__u32 length;
	__u8 *rtp;

	config = bpf_map_lookup_elem(&vox_lg_config, &zero);
	if (!config)
		return vox_lg_pass();
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return vox_lg_pass();
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP || ip->daddr != config->backend_addr)
		return vox_lg_pass();
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return vox_lg_pass();
	port = bpf_ntohs(udp->dest);
	if (port < config->port_low || port > config->port_high)
		return vox_lg_pass();
	length = bpf_ntohs(udp->len);
	vox_lg_add(VOX_LG_RETURNED, 1);
	vox_lg_add(VOX_LG_BYTES, length >= 8 ? length - 8 : 0);
	/* RTP: version 2, a 12-byte header without CSRCs or extension, then the magic. */
	rtp = (__u8 *)(udp + 1);
	if ((void *)(rtp + 16) <= end && rtp[0] == 0x80 && *(__be32 *)(rtp + 12) == config->magic &&
	    (config->payload_length == 0 || length == 8 + 12 + config->payload_length))
		vox_lg_add(VOX_LG_VERIFIED, 1);
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
