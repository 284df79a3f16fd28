/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Header parsing for the XDP program: Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (with
 * options), IPv6 (with hop-by-hop, routing and destination-options headers), UDP.
 * Every read is preceded by a check against data_end; the verifier refuses the program
 * otherwise, so a truncated frame can only ever lead to a verdict, never to a bad read.
 */
#ifndef VOXEDGE_PARSE_H
#define VOXEDGE_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "voxedge_shared.h"

/* IPv6 extension headers walked before giving up: enough for what real media traffic
 * carries (usually none); a longer chain goes to the kernel. */
#define VOX_MAX_IPV6_EXT_HEADERS 4

/* 802.1Q/802.1ad tag between the MAC addresses and the EtherType. */
struct vox_vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* What the parser found in a UDP datagram. */
struct vox_packet {
	struct vox_addr src;
	struct vox_addr dst;
	__be16 sport;
	__be16 dport;
	/* First byte of the UDP payload (RFC 7983 class), or -1 if the payload is empty
	 * or not within the frame. */
	int first_byte;
};

static __always_inline void vox_addr_from_ipv4(struct vox_addr *a, __be32 ip)
{
	a->words[0] = 0;
	a->words[1] = 0;
	a->words[2] = bpf_htonl(0x0000ffff);
	a->words[3] = ip;
}

static __always_inline void vox_addr_from_ipv6(struct vox_addr *a, const struct in6_addr *ip)
{
	a->words[0] = ip->in6_u.u6_addr32[0];
	a->words[1] = ip->in6_u.u6_addr32[1];
	a->words[2] = ip->in6_u.u6_addr32[2];
	a->words[3] = ip->in6_u.u6_addr32[3];
}

/* Parses the frame. Returns -1 for a UDP datagram (filled into *pkt), or the pass counter
 * (enum vox_counter) that explains why the frame is none of our business. */
static __always_inline int vox_parse(struct xdp_md *ctx, struct vox_packet *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *pos;
	__u16 proto;
	__u8 l4proto;

	if ((void *)(eth + 1) > end)
		return VOX_CNT_PASS_TRUNCATED;
	proto = eth->h_proto;
	pos = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vox_vlan_hdr *vlan = pos;

		if ((void *)(vlan + 1) > end)
			return VOX_CNT_PASS_TRUNCATED;
		proto = vlan->encapsulated_proto;
		pos = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = pos;
		__u32 ihl;

		if ((void *)(ip + 1) > end)
			return VOX_CNT_PASS_TRUNCATED;
		ihl = ip->ihl;
		if (ip->version != 4 || ihl < 5)
			return VOX_CNT_PASS_TRUNCATED;
		if (ip->protocol != IPPROTO_UDP)
			return VOX_CNT_PASS_NOT_UDP;
		/* More-fragments flag or a fragment offset: not a whole datagram. */
		if (ip->frag_off & bpf_htons(0x3fff))
			return VOX_CNT_PASS_FRAGMENT;
		vox_addr_from_ipv4(&pkt->src, ip->saddr);
		vox_addr_from_ipv4(&pkt->dst, ip->daddr);
		pos = (void *)ip + ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = pos;

		if ((void *)(ip6 + 1) > end)
			return VOX_CNT_PASS_TRUNCATED;
		if (ip6->version != 6)
			return VOX_CNT_PASS_TRUNCATED;
		l4proto = ip6->nexthdr;
		pos = ip6 + 1;
#pragma unroll
		for (int i = 0; i < VOX_MAX_IPV6_EXT_HEADERS; i++) {
			__u8 *ext = pos;

			if (l4proto == IPPROTO_FRAGMENT)
				return VOX_CNT_PASS_FRAGMENT;
			if (l4proto != IPPROTO_HOPOPTS && l4proto != IPPROTO_ROUTING &&
			    l4proto != IPPROTO_DSTOPTS)
				break;
			/* Next header, then length in 8-byte units not counting the first 8. */
			if ((void *)(ext + 2) > end)
				return VOX_CNT_PASS_TRUNCATED;
			l4proto = ext[0];
			pos = ext + (ext[1] + 1) * 8;
		}
		if (l4proto != IPPROTO_UDP)
			return l4proto == IPPROTO_FRAGMENT ? VOX_CNT_PASS_FRAGMENT : VOX_CNT_PASS_NOT_UDP;
		vox_addr_from_ipv6(&pkt->src, &ip6->saddr);
		vox_addr_from_ipv6(&pkt->dst, &ip6->daddr);
	} else {
		return VOX_CNT_PASS_NOT_IP;
	}

	struct udphdr *udp = pos;

	if ((void *)(udp + 1) > end)
		return VOX_CNT_PASS_TRUNCATED;
	pkt->sport = udp->source;
	pkt->dport = udp->dest;
	__u8 *payload = (void *)(udp + 1);

	pkt->first_byte = (void *)(payload + 1) > end ? -1 : payload[0];
	return -1;
}

#endif /* VOXEDGE_PARSE_H */
