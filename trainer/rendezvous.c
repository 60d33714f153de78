// trainer/rendezvous.c — see rendezvous.h.
#include "rendezvous.h"
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct rendezvous {
    int rank, world;
    int *fds;                 // rank 0: fds[peer]; others: fds[0] = rank 0
    double timeout_s;
    char where[300];          // "host:port" for messages
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int wait_fd(int fd, short events, double deadline) {
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0) return 0;
        struct pollfd p = {fd, events, 0};
        int ms = left > 1e6 ? 1000000000 : (int)(left * 1000) + 1;
        int n = poll(&p, 1, ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n > 0) return 1;
    }
}

static void tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Rank 0 listens on MASTER_ADDR's own address when it is one of this host's (127.0.0.1 for
// `--gpus`: loopback only), else on every interface.
static int listen_on(rendezvous *r, const char *addr, int port, char *err, size_t errlen) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int tries = 0;
    if (getaddrinfo(addr, service, &hints, &res) != 0) res = NULL;
    for (int any = 0; any < 2; any++) {
        struct addrinfo *list = res;
        if (any) {
            if (res) freeaddrinfo(res);
            res = NULL;
            if (getaddrinfo(NULL, service, &hints, &res) != 0) break;
            list = res;
        }
        for (struct addrinfo *a = list; a; a = a->ai_next) {
            int fd = socket(a->ai_family, SOCK_STREAM, 0);
            if (fd < 0) continue;
            int one = 1, zero = 0;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (a->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            tries++;
            if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 256) == 0) {
                freeaddrinfo(res);
                return fd;
            }
            int e = errno;
            close(fd);
            if (e == EADDRINUSE) {
                freeaddrinfo(res);
                snprintf(err, errlen, "rendezvous: rank 0 cannot listen at %s: the port is in use; choose a free "
                         "MASTER_PORT", r->where);
                return -1;
            }
        }
    }
    if (res) freeaddrinfo(res);
    snprintf(err, errlen, "rendezvous: rank 0 cannot listen at %s (%s); check MASTER_ADDR and MASTER_PORT", r->where,
             tries ? strerror(errno) : "no usable address");
    return -1;
}

// Peers: connect to addr:port until it answers or the deadline passes (rank 0 may start later).
static int connect_to(rendezvous *r, const char *addr, int port, double deadline, char *err, size_t errlen) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(addr, service, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "rendezvous: cannot resolve MASTER_ADDR %s: %s", r->where, gai_strerror(g));
        return -1;
    }
    const char *last = "no answer";
    for (;;) {
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            int fd = socket(a->ai_family, SOCK_STREAM, 0);
            if (fd < 0) continue;
            if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
                freeaddrinfo(res);
                tune(fd);
                return fd;
            }
            last = strerror(errno);
            close(fd);
        }
        if (now_s() >= deadline) break;
        struct timespec t = {0, 100 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    freeaddrinfo(res);
    snprintf(err, errlen, "rendezvous: rank %d could not reach rank 0 at %s within %.0f s (%s); check MASTER_ADDR "
             "and MASTER_PORT, that rank 0 started, and that the port is open between the servers",
             r->rank, r->where, r->timeout_s, last);
    return -1;
}

static int io_all(rendezvous *r, int fd, void *buf, size_t bytes, int sending, int peer, char *err, size_t errlen) {
    char *p = buf;
    double deadline = now_s() + r->timeout_s;
    while (bytes) {
        int w = wait_fd(fd, sending ? POLLOUT : POLLIN, deadline);
        if (w <= 0) {
            snprintf(err, errlen, "rank %d: %s rank %d timed out after %.0f s (--dist-timeout); a rank is stuck or dead",
                     r->rank, sending ? "sending to" : "waiting for", peer, r->timeout_s);
            return -1;
        }
        ssize_t n = sending ? send(fd, p, bytes, MSG_NOSIGNAL) : recv(fd, p, bytes, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {
            snprintf(err, errlen, "rank %d: the connection to rank %d (%s) closed: that rank failed or was killed; "
                     "see its message", r->rank, peer, r->where);
            return -1;
        }
        p += n;
        bytes -= (size_t)n;
    }
    return 0;
}

rendezvous *rendezvous_open(const char *addr, int port, int rank, int world, double timeout_s, char *err, size_t errlen) {
    if (port <= 0 || port > 65535) { snprintf(err, errlen, "rendezvous: MASTER_PORT %d is not a TCP port (1-65535)", port); return NULL; }
    rendezvous *r = calloc(1, sizeof *r);
    if (!r || !(r->fds = malloc(sizeof(int) * (size_t)world))) { free(r); snprintf(err, errlen, "out of memory"); return NULL; }
    for (int i = 0; i < world; i++) r->fds[i] = -1;
    r->rank = rank;
    r->world = world;
    r->timeout_s = timeout_s;
    snprintf(r->where, sizeof r->where, "%s:%d", addr, port);
    double deadline = now_s() + timeout_s;
    if (rank == 0) {
        int lfd = listen_on(r, addr, port, err, errlen);
        if (lfd < 0) { rendezvous_close(r); return NULL; }
        for (int got = 1; got < world; got++) {
            int w = wait_fd(lfd, POLLIN, deadline);
            if (w <= 0) {
                snprintf(err, errlen, "rendezvous at %s: only %d of %d ranks arrived within %.0f s (--dist-timeout); "
                         "check that every rank was started with the same MASTER_ADDR/MASTER_PORT", r->where, got, world,
                         timeout_s);
                close(lfd);
                rendezvous_close(r);
                return NULL;
            }
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) { got--; continue; }
            tune(fd);
            int32_t peer = -1;
            int bad = io_all(r, fd, &peer, sizeof peer, 0, -1, err, errlen);
            if (!bad && (peer <= 0 || peer >= world || r->fds[peer] >= 0)) {
                snprintf(err, errlen, "rendezvous at %s: a peer said it is rank %d of world %d (or a duplicate); check "
                         "RANK/WORLD_SIZE", r->where, (int)peer, world);
                bad = 1;
            }
            if (bad) {
                close(fd);
                close(lfd);
                rendezvous_close(r);
                return NULL;
            }
            r->fds[peer] = fd;
        }
        close(lfd);
        // Everyone is here: tell them.
        int32_t ok = 1;
        for (int p = 1; p < world; p++)
            if (rendezvous_send(r, p, &ok, sizeof ok, err, errlen)) { rendezvous_close(r); return NULL; }
    } else {
        r->fds[0] = connect_to(r, addr, port, deadline, err, errlen);
        int32_t me = rank, ok = 0;
        if (r->fds[0] < 0 || rendezvous_send(r, 0, &me, sizeof me, err, errlen) ||
            rendezvous_recv(r, 0, &ok, sizeof ok, err, errlen)) {
            rendezvous_close(r);
            return NULL;
        }
    }
    return r;
}

int rendezvous_send(rendezvous *r, int peer, const void *buf, size_t bytes, char *err, size_t errlen) {
    int fd = r->fds[r->rank == 0 ? peer : 0];
    if (fd < 0) { snprintf(err, errlen, "rank %d: no connection to rank %d (closed)", r->rank, peer); return -1; }
    return io_all(r, fd, (void *)buf, bytes, 1, peer, err, errlen);
}

int rendezvous_recv(rendezvous *r, int peer, void *buf, size_t bytes, char *err, size_t errlen) {
    int fd = r->fds[r->rank == 0 ? peer : 0];
    if (fd < 0) { snprintf(err, errlen, "rank %d: no connection to rank %d (closed)", r->rank, peer); return -1; }
    return io_all(r, fd, buf, bytes, 0, peer, err, errlen);
}

void rendezvous_close(rendezvous *r) {
    if (!r) return;
    for (int i = 0; i < r->world; i++)
        if (r->fds[i] >= 0) close(r->fds[i]);
    free(r->fds);
    free(r);
}
