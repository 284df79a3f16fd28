// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Someone else's XDP program, for the attach tests only: the loader must refuse to
 * replace it and leave it attached. It passes every packet, so the interface keeps
 * working while it is there.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int not_voxedge(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
