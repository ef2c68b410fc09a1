/* tcp-daytime-server: the classic BSD-socket daytime server, fixed (getaddrinfo, IPv6, error
 * checks, SO_REUSEADDR). Same options and output as analyzer/demos/tcp_daytime_server.py. */
#include "demo_common.h"
#include <getopt.h>

static int serve(int conn, const char *mode, int chunks) {
    char line[32];
    if (strcmp(mode, "half-close") == 0) {
        int one = 1;
        setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (demo_recv_all(conn, NULL) < 0) return -1;
        demo_time_line(line);
        for (int i = 1; i <= chunks; i++) {
            char buf[96];
            int n = snprintf(buf, sizeof buf, "chunk %d of %d: %s", i, chunks, line);
            if (demo_send_all(conn, buf, (size_t)n) < 0) return -1;
        }
        return 0;
    }
    demo_time_line(line);
    if (demo_send_all(conn, line, strlen(line)) < 0) return -1;
    if (strcmp(mode, "wait-eof") == 0) {
        if (demo_recv_all(conn, NULL) < 0) return -1;
    } else if (strcmp(mode, "abort") == 0) {
        struct linger lg = {1, 0};
        setsockopt(conn, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    } else if (strcmp(mode, "simultaneous") == 0) {
        if (demo_wait_go() < 0) return -1;
        shutdown(conn, SHUT_WR);
        if (demo_recv_all(conn, NULL) < 0) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    static struct option opts[] = {
        {"clients", required_argument, 0, 'n'},
        {"mode", required_argument, 0, 'm'},
        {"chunks", required_argument, 0, 'k'},
        {0, 0, 0, 0},
    };
    int clients = 0, chunks = 3, opt;
    const char *mode = "close";
    while ((opt = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        switch (opt) {
        case 'n': clients = atoi(optarg); break;
        case 'm': mode = optarg; break;
        case 'k': chunks = atoi(optarg); break;
        default: return EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: tcp-daytime-server HOST PORT [-n CLIENTS] [--mode MODE] [--chunks N]\n");
        return EXIT_USAGE;
    }
    const char *host = argv[optind], *port = argv[optind + 1];
    if (strcmp(mode, "close") && strcmp(mode, "wait-eof") && strcmp(mode, "half-close") &&
        strcmp(mode, "abort") && strcmp(mode, "simultaneous")) {
        fprintf(stderr, "error: unknown mode '%s'\n", mode);
        return EXIT_USAGE;
    }
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int family, one = 1;
    int rc = demo_resolve(host, port, SOCK_STREAM, 1, &addr, &addrlen, &family);
    if (rc != 0) {
        demo_error("cannot listen on %s port %s: %s", host, port, gai_strerror(rc));
        return EXIT_BIND;
    }
    int listener = socket(family, SOCK_STREAM, 0);
    if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(listener, (struct sockaddr *)&addr, addrlen) < 0 || listen(listener, 10) < 0) {
        demo_error("cannot listen on %s port %s: %s", host, port, strerror(errno));
        return EXIT_BIND;
    }
    for (int served = 0; clients == 0 || served < clients; served++) {
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof peer;
        int conn = accept(listener, (struct sockaddr *)&peer, &peerlen);
        if (conn < 0) {
            if (errno == EINTR) { served--; continue; }
            demo_error("accept: %s%s%s", strerror(errno), "", "");
            return EXIT_NETWORK;
        }
        char who[INET6_ADDRSTRLEN + 16];
        demo_peer_text(&peer, who, sizeof who);
        printf("client %s connected\n", who);
        fflush(stdout);
        if (serve(conn, mode, chunks) < 0) demo_error("client %s: %s%s", who, strerror(errno), "");
        close(conn);
    }
    close(listener);
    return 0;
}
