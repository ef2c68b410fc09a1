/* udp-echo-server: loop on recvfrom, send each datagram back to its sender. Same options and
 * output as analyzer/demos/udp_echo_server.py. */
#include "demo_common.h"
#include <getopt.h>

int main(int argc, char **argv) {
    static struct option opts[] = {{"datagrams", required_argument, 0, 'n'}, {0, 0, 0, 0}};
    int limit = 0, opt;
    while ((opt = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        if (opt == 'n') limit = atoi(optarg);
        else return EXIT_USAGE;
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: udp-echo-server HOST PORT [-n DATAGRAMS]\n");
        return EXIT_USAGE;
    }
    const char *host = argv[optind], *port = argv[optind + 1];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int family;
    int rc = demo_resolve(host, port, SOCK_DGRAM, 1, &addr, &addrlen, &family);
    if (rc != 0) {
        demo_error("cannot bind %s port %s: %s", host, port, gai_strerror(rc));
        return EXIT_BIND;
    }
    int sock = socket(family, SOCK_DGRAM, 0);
    if (sock < 0 || bind(sock, (struct sockaddr *)&addr, addrlen) < 0) {
        demo_error("cannot bind %s port %s: %s", host, port, strerror(errno));
        return EXIT_BIND;
    }
    static char buf[65536];
    for (int echoed = 0; limit == 0 || echoed < limit; echoed++) {
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof peer;
        ssize_t n = recvfrom(sock, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peerlen);
        if (n < 0) {
            if (errno == EINTR) { echoed--; continue; }
            demo_error("recvfrom: %s%s%s", strerror(errno), "", "");
            close(sock);
            return EXIT_NETWORK;
        }
        char who[INET6_ADDRSTRLEN + 16];
        demo_peer_text(&peer, who, sizeof who);
        printf("%s: %zd bytes\n", who, n);
        fflush(stdout);
        sendto(sock, buf, (size_t)n, 0, (struct sockaddr *)&peer, peerlen);
    }
    close(sock);
    return 0;
}
