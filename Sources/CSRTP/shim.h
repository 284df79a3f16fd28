#ifndef VOX_CSRTP_SHIM_H
#define VOX_CSRTP_SHIM_H
// libsrtp2: the interoperability oracle in tests and the baseline in benchmarks.
// It is not on the packet path (FINDINGS: Debian's build costs 5-20 us a packet).
#include <srtp2/srtp.h>
#endif
