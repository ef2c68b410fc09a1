/* tcp-daytime-client: the classic BSD-socket daytime client, fixed: it closes its socket (not the
 * return value of connect), reads until EOF with recv, never uses gets. Same options and output as
 * analyzer/demos/tcp_daytime_client.py. */
#include "demo_common.h"
#include <getopt.h>

static int fail(const char *host, const char *port, double timeout) {
    if (errno == ECONNREFUSED) demo_error("connection refused by %s port %s%s", host, port, "");
    else if (errno == ECONNRESET) demo_error("connection reset by %s port %s%s", host, port, "");
    else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS || errno == ETIMEDOUT)
    {
        char t[32];
        snprintf(t, sizeof t, "%g", timeout);
        demo_error("timed out after %s s talking to %s port %s", t, host, port);
    }
    else demo_error("%s port %s: %s", host, port, strerror(errno));
    return EXIT_NETWORK;
}

int main(int argc, char **argv) {
    static struct option opts[] = {
        {"mode", required_argument, 0, 'm'},
        {"request", required_argument, 0, 'r'},
        {"timeout", required_argument, 0, 't'},
        {0, 0, 0, 0},
    };
    const char *mode = "read-eof", *request = "time, please";
    double timeout = 5.0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': mode = optarg; break;
        case 'r': request = optarg; break;
        case 't': timeout = atof(optarg); break;
        default: return EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: tcp-daytime-client HOST PORT [--mode MODE] [--request TEXT] [--timeout S]\n");
        return EXIT_USAGE;
    }
    const char *host = argv[optind], *port = argv[optind + 1];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int family;
    int rc = demo_resolve(host, port, SOCK_STREAM, 0, &addr, &addrlen, &family);
    if (rc != 0) {
        demo_error("%s port %s: %s", host, port, gai_strerror(rc));
        return EXIT_NETWORK;
    }
    int sock = socket(family, SOCK_STREAM, 0);
    if (sock < 0) return fail(host, port, timeout);
    demo_set_timeout(sock, timeout);
    if (connect(sock, (struct sockaddr *)&addr, addrlen) < 0) {
        int code = fail(host, port, timeout);
        close(sock);
        return code;
    }
    long got = 0;
    if (strcmp(mode, "half-close") == 0) {
        char buf[1024];
        int n = snprintf(buf, sizeof buf, "%s\n", request);
        if (demo_send_all(sock, buf, (size_t)n) < 0) got = -1;
        else {
            shutdown(sock, SHUT_WR);
            got = demo_recv_all(sock, stdout);
        }
    } else if (strcmp(mode, "read-eof") == 0) {
        got = demo_recv_all(sock, stdout);
    } else {
        got = demo_recv_line(sock, stdout);
        fflush(stdout);
        if (got >= 0 && strcmp(mode, "simultaneous") == 0) {
            if (demo_wait_go() < 0) got = -1;
            else {
                shutdown(sock, SHUT_WR);
                got = demo_recv_all(sock, NULL);
            }
        }
    }
    fflush(stdout);
    int code = got < 0 ? fail(host, port, timeout) : 0;
    close(sock);
    return code;
}
