#ifndef VOX_CXDP_SHIM_H
#define VOX_CXDP_SHIM_H
// libxdp's AF_XDP socket API (xsk.h) and libbpf. The ring helpers in xsk.h are
// `static inline` and import into Swift as they are (FINDINGS: they inline fully at -O).
#include <xdp/xsk.h>
#include <xdp/libxdp.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/if_link.h>

// libbpf's option structs carry their own size (`sz`) and are meant to be declared with the
// LIBBPF_OPTS macro, which Swift cannot expand: each wrapper below declares one that way.

/// Attaches an XDP program through a bpf_link (detached when the last fd to the link closes).
/// Wrapped because `struct bpf_link_create_opts` is declared with LIBBPF_OPTS.
static inline int vox_bpf_link_create_xdp(int prog_fd, int ifindex, __u32 xdp_flags) {
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = xdp_flags);
    return bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);
}

/// Reports the XDP programs attached to an interface, per mode (0 = none).
/// Wrapped because `struct bpf_xdp_query_opts` is declared with LIBBPF_OPTS.
static inline int vox_bpf_xdp_query(int ifindex, __u32 *drv_prog_id, __u32 *skb_prog_id,
                                    __u32 *hw_prog_id, __u8 *attach_mode) {
    LIBBPF_OPTS(bpf_xdp_query_opts, opts);
    int err = bpf_xdp_query(ifindex, 0, &opts);
    if (err) return err;
    *drv_prog_id = opts.drv_prog_id;
    *skb_prog_id = opts.skb_prog_id;
    *hw_prog_id = opts.hw_prog_id;
    *attach_mode = opts.attach_mode;
    return 0;
}

/// Runs a program once per `repeat` over a copy of `data` (BPF_PROG_TEST_RUN).
/// Wrapped because `struct bpf_test_run_opts` is declared with LIBBPF_OPTS.
static inline int vox_bpf_prog_test_run(int prog_fd, const void *data, __u32 size, int repeat,
                                        __u32 *retval, __u32 *duration_ns) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data, .data_size_in = size, .repeat = repeat);
    int err = bpf_prog_test_run_opts(prog_fd, &opts);
    if (err) return err;
    *retval = opts.retval;
    *duration_ns = opts.duration;
    return 0;
}

#endif
