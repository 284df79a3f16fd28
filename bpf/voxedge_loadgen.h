/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Shared by the load generator's return counter (voxedge_loadgen.bpf.c) and Swift
 * (VoxXDP.ReturnCounter, through the CVoxBPF module): its configuration and counters.
 */
#ifndef VOXEDGE_LOADGEN_H
#define VOXEDGE_LOADGEN_H

#include <linux/types.h>

#define VOX_LG_PROG_NAME "voxedge_lg_xdp"
#define VOX_LG_MAP_CONFIG "vox_lg_config"
#define VOX_LG_MAP_COUNTERS "vox_lg_counters"

/* What counts as a return: IPv4 UDP to `backend_addr` with a destination port in
 * [port_low, port_high]. `magic` is what the generator writes at the start of every RTP
 * payload: a return whose payload starts with it was decrypted correctly by the engine. */
struct vox_lg_config {
	__be32 backend_addr; /* network byte order */
	__u16 port_low;      /* host byte order */
	__u16 port_high;     /* host byte order */
	__be32 magic;        /* as the bytes appear on the wire */
	__u32 payload_length; /* expected RTP payload bytes (0: any) */
};
_Static_assert(sizeof(struct vox_lg_config) == 16, "vox_lg_config layout");

/* Per-CPU counters (vox_lg_counters), one __u64 each. */
enum vox_lg_counter {
	VOX_LG_RETURNED = 0, /* matched the config: dropped here, counted */
	VOX_LG_VERIFIED,     /* ... and was RTP v2 whose payload starts with the magic at the expected length */
	VOX_LG_BYTES,        /* UDP payload bytes of the returns */
	VOX_LG_PASSED,       /* everything else: passed to the kernel */
	VOX_LG_COUNTER_COUNT
};

#endif
