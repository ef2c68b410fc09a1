/* Helpers shared by the four C demo programs; the Python versions in analyzer/demos/ behave
 * identically (same options, same output lines, same exit codes, same bytes on the wire). */
#ifndef DEMO_COMMON_H
#define DEMO_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define EXIT_NETWORK 1
#define EXIT_USAGE 2
#define EXIT_BIND 3

static inline void demo_error(const char *fmt, const char *a, const char *b, const char *c) {
    fputs("error: ", stderr);
    fprintf(stderr, fmt, a, b, c);
    fputc('\n', stderr);
    fflush(stderr);
}

/* First address of host:port for socktype; returns 0 or the getaddrinfo error. */
static inline int demo_resolve(const char *host, const char *port, int socktype, int passive,
                        struct sockaddr_storage *out, socklen_t *outlen, int *family) {
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) return rc;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *outlen = res->ai_addrlen;
    *family = res->ai_family;
    freeaddrinfo(res);
    return 0;
}

/* "IP(PORT)" as the textbook servers print a peer. */
static inline void demo_peer_text(const struct sockaddr_storage *sa, char *buf, size_t len) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        port = ntohs(s4->sin_port);
    }
    snprintf(buf, len, "%s(%d)", ip, port);
}

/* Local time as "YYYY-MM-DD HH:MM:SS\n" (20 bytes + NUL). */
static inline void demo_time_line(char buf[32]) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(buf, 32, "%Y-%m-%d %H:%M:%S\n", &tm);
}

static inline int demo_send_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read until EOF; copy to out (when not NULL). Returns bytes read or -1. */
static inline long demo_recv_all(int fd, FILE *out) {
    char buf[65536];
    long total = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) return total;
        if (out) fwrite(buf, 1, (size_t)n, out);
        total += n;
    }
}

/* Read up to and including the first newline; copy to out. Returns bytes or -1. */
static inline long demo_recv_line(int fd, FILE *out) {
    long total = 0;
    char ch;
    for (;;) {
        ssize_t n = recv(fd, &ch, 1, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) return total;
        fputc(ch, out);
        total++;
        if (ch == '\n') return total;
    }
}

/* The simultaneous-close barrier: print "ready", read "go DEADLINE_NS", spin on CLOCK_MONOTONIC. */
static inline int demo_wait_go(void) {
    char word[8];
    long long deadline;
    printf("ready\n");
    fflush(stdout);
    if (scanf("%7s %lld", word, &deadline) != 2 || strcmp(word, "go") != 0) {
        fprintf(stderr, "error: expected 'go DEADLINE_NS' on stdin\n");
        return -1;
    }
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if ((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec >= deadline) return 0;
    }
}

static inline void demo_set_timeout(int fd, double seconds) {
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

#endif
