/* A TCP connection-rate load generator that is not the bottleneck: one epoll loop, many
 * non-blocking connects in flight, each closed with a RST as soon as the handshake completes
 * (SO_LINGER 0: no TIME_WAIT, so client ports are reusable at once).
 *
 *   loadgen serve PORT                      accept and close, forever (until killed)
 *   loadgen connect ADDR PORT SECONDS CONC  CONC connects in flight for SECONDS; prints JSON
 *   loadgen flood ADDR PORT SECONDS         UDP datagrams as fast as one core sends them (a
 *                                           flood of forbidden traffic); prints JSON
 *
 * Built by bench/dataplane_bench.py with `gcc -O2`. Only used inside the benchmark's own
 * network namespaces.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int serve(int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 65535)) {
        perror("listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        struct epoll_event out[1];
        if (epoll_wait(ep, out, 1, -1) < 0 && errno != EINTR) return 1;
        for (;;) {
            int c = accept4(s, NULL, NULL, SOCK_NONBLOCK);
            if (c < 0) break;
            close(c); /* a FIN; the client's RST then frees both ends (no TIME_WAIT) */
        }
    }
}

static int open_one(int ep, struct sockaddr_in *dst) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c < 0) return -1;
    struct linger lin = {1, 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lin, sizeof lin);
    if (connect(c, (struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS) {
        close(c);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
    return c;
}

static int connect_load(const char *addr, int port, double seconds, int conc) {
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, addr, &dst.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", addr);
        return 2;
    }
    int ep = epoll_create1(0);
    long ok = 0, failed = 0, open_failed = 0;
    int inflight = 0;
    double start = now(), end = start + seconds;
    for (int i = 0; i < conc; i++) {
        if (open_one(ep, &dst) >= 0) inflight++;
        else open_failed++;
    }
    struct epoll_event evs[256];
    double t;
    while ((t = now()) < end) {
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++) {
            int c = evs[i].data.fd, err = 0;
            socklen_t len = sizeof err;
            getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len);
            /* ECONNRESET: the handshake completed, then the server's close raced our check. */
            if (err == 0 || err == ECONNRESET) ok++;
            else failed++;
            close(c); /* RST */
            inflight--;
            if (open_one(ep, &dst) >= 0) inflight++;
            else open_failed++;
        }
        while (inflight < conc) {
            if (open_one(ep, &dst) < 0) {
                open_failed++;
                break;
            }
            inflight++;
        }
    }
    double elapsed = now() - start;
    printf("{\"connects\": %ld, \"failed\": %ld, \"open_failed\": %ld, \"seconds\": %.6f, "
           "\"rate\": %.1f, \"concurrency\": %d}\n",
           ok, failed, open_failed, elapsed, ok / elapsed, conc);
    return 0;
}

static int flood(const char *addr, int port, double seconds) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, addr, &a.sin_addr);
    long sent = 0, failed = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        for (int i = 0; i < 256; i++) {
            /* one socket, one flow: dropped, it is never confirmed, so each datagram meets the
             * gateway's rules again */
            if (sendto(s, "peerwall", 8, 0, (struct sockaddr *)&a, sizeof a) < 0) failed++;
            else sent++;
        }
    }
    double took = now() - start;
    printf("{\"sent\": %ld, \"failed\": %ld, \"seconds\": %.3f, \"rate\": %.1f}\n", sent,
           failed, took, sent / took);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "flood"))
        return flood(argv[2], atoi(argv[3]), atof(argv[4]));
    if (argc == 6 && !strcmp(argv[1], "connect"))
        return connect_load(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]));
    fprintf(stderr,
            "usage: loadgen serve PORT | loadgen connect ADDR PORT SECONDS CONC | "
            "loadgen flood ADDR PORT SECONDS\n");
    return 2;
}
