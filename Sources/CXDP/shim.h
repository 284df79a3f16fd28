#ifndef VOX_CXDP_SHIM_H
#define VOX_CXDP_SHIM_H
// libxdp's AF_XDP socket API (xsk.h) and libbpf. The ring helpers in xsk.h are
// `static inline` and import into Swift as they are (FINDINGS: they inline fully at -O).
#include <xdp/xsk.h>
#include <xdp/libxdp.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#endif
