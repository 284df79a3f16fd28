#define _GNU_SOURCE
#include "CVoxLinux.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <unistd.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>

_Static_assert(sizeof(struct vox_mmsghdr) == sizeof(struct mmsghdr), "vox_mmsghdr must mirror mmsghdr");
_Static_assert(offsetof(struct vox_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "msg_len offset");

int vox_recvmmsg(int fd, struct vox_mmsghdr *msgs, unsigned int n) {
    int r = recvmmsg(fd, (struct mmsghdr *)msgs, n, MSG_DONTWAIT, NULL);
    return r < 0 ? -errno : r;
}

int vox_sendmmsg(int fd, struct vox_mmsghdr *msgs, unsigned int n) {
    int r = sendmmsg(fd, (struct mmsghdr *)msgs, n, MSG_DONTWAIT);
    return r < 0 ? -errno : r;
}

int vox_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int vox_set_reuseport(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ? -errno : 0;
}

int vox_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int vox_epoll_add(int epfd, int fd, unsigned long long token) {
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = token};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) < 0 ? -errno : 0;
}

int vox_epoll_wait(int epfd, unsigned long long *tokens, int max, int timeout_ms) {
    struct epoll_event events[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, events, max, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) tokens[i] = events[i].data.u64;
    return n;
}

int vox_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int r = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    return -r;
}

void vox_unblock_all_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

int vox_ethtool_channels(int fd, const char *name, unsigned int counts[4]) {
    struct ethtool_channels channels = {.cmd = ETHTOOL_GCHANNELS};
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_data = (void *)&channels;
    if (ioctl(fd, SIOCETHTOOL, &request) < 0) return -errno;
    counts[0] = channels.rx_count;
    counts[1] = channels.tx_count;
    counts[2] = channels.other_count;
    counts[3] = channels.combined_count;
    return 0;
}

int vox_setns(int fd, int nstype) {
    return setns(fd, nstype) < 0 ? -errno : 0;
}

int vox_packet_tx_socket(int ifindex) {
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_ll address;
    memset(&address, 0, sizeof address);
    address.sll_family = AF_PACKET;
    address.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

long long vox_socket_drops(int fd) {
    unsigned int info[SK_MEMINFO_VARS];
    socklen_t length = sizeof(info);
    if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, info, &length) < 0) return -errno;
    return info[SK_MEMINFO_DROPS];
}
