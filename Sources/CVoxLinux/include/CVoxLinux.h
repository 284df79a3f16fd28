#ifndef VOX_LINUX_H
#define VOX_LINUX_H
// _GNU_SOURCE-only Linux calls (FINDINGS: recvmmsg/sendmmsg and struct mmsghdr are not
// visible to Swift through Glibc), behind prefixed names. The struct mirrors
// struct mmsghdr exactly; shim.c checks that with _Static_assert.
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct vox_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

/// recvmmsg(2) with MSG_DONTWAIT and no timeout: the messages ready now, up to `n`.
/// Returns the count, or -errno.
int vox_recvmmsg(int fd, struct vox_mmsghdr *msgs, unsigned int n);
/// sendmmsg(2) with MSG_DONTWAIT. Returns the count sent, or -errno.
int vox_sendmmsg(int fd, struct vox_mmsghdr *msgs, unsigned int n);
/// An epoll set; -errno on failure.
int vox_epoll_create(void);
/// Watches `fd` for input, reporting `token` when it is readable; 0 or -errno.
int vox_epoll_add(int epfd, int fd, unsigned long long token);
/// Waits up to `timeout_ms` and writes the tokens of ready descriptors (epoll_event is a
/// packed struct on x86-64: this keeps its layout out of Swift). Count, or -errno.
int vox_epoll_wait(int epfd, unsigned long long *tokens, int max, int timeout_ms);
/// Pins the calling thread to `cpu`; 0 or -errno.
int vox_pin_current_thread(int cpu);
/// Unblocks every signal for the calling thread. A process started by a parent that blocks
/// signals (test runners do) inherits the mask; `voxedge run` must still see SIGTERM, and
/// Foundation's Process must still see SIGCHLD.
void vox_unblock_all_signals(void);
/// A non-blocking, close-on-exec eventfd (sys/eventfd.h is not in Swift's Glibc module);
/// the fd or -errno.
int vox_eventfd(void);
/// Sets SO_REUSEPORT (1) on `fd`; 0 or -errno.
int vox_set_reuseport(int fd);
/// How many packets the kernel has dropped on socket `fd` since it was made (its receive
/// buffer full, a bad checksum): SK_MEMINFO_DROPS of SO_MEMINFO, whose index lives in
/// linux/sock_diag.h. A 32-bit count that wraps; -errno on failure.
long long vox_socket_drops(int fd);
/// The active channel counts of interface `name` (ETHTOOL_GCHANNELS through SIOCETHTOOL:
/// ioctl is variadic and struct ifreq is a union, neither importable) into
/// `counts` = {rx, tx, other, combined}; `fd` is any socket of the interface's namespace.
/// 0 or -errno (-EOPNOTSUPP when the driver has no channels).
int vox_ethtool_channels(int fd, const char *name, unsigned int counts[4]);
/// setns(2) (_GNU_SOURCE-only): moves the calling thread into the namespace `fd` refers to.
/// 0 or -errno.
int vox_setns(int fd, int nstype);
/// A transmit-only packet socket (AF_PACKET, SOCK_RAW, protocol 0: it receives nothing)
/// bound to interface `ifindex`: whole Ethernet frames go out as they are, any 5-tuple in
/// one sendmmsg. The load generator's socket path. The fd, or -errno.
int vox_packet_tx_socket(int ifindex);
#endif
