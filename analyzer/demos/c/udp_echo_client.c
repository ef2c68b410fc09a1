/* udp-echo-client: send each line (stdin or --message), wait for the echo with a timeout, print
 * "reply: ...". Connected socket, so ICMP port unreachable shows as ECONNREFUSED. Same options and
 * output as analyzer/demos/udp_echo_client.py. */
#include "demo_common.h"
#include <getopt.h>

static int exchange(int sock, const char *msg, size_t len, const char *host, const char *port,
                    double timeout) {
    static char buf[65536];
    if (send(sock, msg, len, 0) < 0) goto err;
    ssize_t n = recv(sock, buf, sizeof buf, 0);
    if (n < 0) goto err;
    printf("reply: %.*s\n", (int)n, buf);
    fflush(stdout);
    return 0;
err:
    if (errno == ECONNREFUSED) demo_error("%s port %s is unreachable (ICMP port unreachable)%s", host, port, "");
    else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        char t[32];
        snprintf(t, sizeof t, "%g", timeout);
        demo_error("no reply from %s port %s within %s s", host, port, t);
    } else demo_error("%s port %s: %s", host, port, strerror(errno));
    return EXIT_NETWORK;
}

int main(int argc, char **argv) {
    static struct option opts[] = {
        {"message", required_argument, 0, 'm'},
        {"timeout", required_argument, 0, 't'},
        {0, 0, 0, 0},
    };
    const char *messages[256];
    int count = 0, opt;
    double timeout = 2.0;
    while ((opt = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            if (count < 256) messages[count++] = optarg;
            break;
        case 't': timeout = atof(optarg); break;
        default: return EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: udp-echo-client HOST PORT [-m MESSAGE]... [--timeout S]\n");
        return EXIT_USAGE;
    }
    const char *host = argv[optind], *port = argv[optind + 1];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int family;
    int rc = demo_resolve(host, port, SOCK_DGRAM, 0, &addr, &addrlen, &family);
    if (rc != 0) {
        demo_error("%s port %s: %s", host, port, gai_strerror(rc));
        return EXIT_NETWORK;
    }
    int sock = socket(family, SOCK_DGRAM, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&addr, addrlen) < 0) {
        demo_error("%s port %s: %s", host, port, strerror(errno));
        return EXIT_NETWORK;
    }
    demo_set_timeout(sock, timeout);
    int code = 0;
    if (count > 0) {
        for (int i = 0; i < count && code == 0; i++)
            code = exchange(sock, messages[i], strlen(messages[i]), host, port, timeout);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while (code == 0 && (len = getline(&line, &cap, stdin)) >= 0) {
            if (len > 0 && line[len - 1] == '\n') len--;
            code = exchange(sock, line, (size_t)len, host, port, timeout);
        }
        free(line);
    }
    close(sock);
    return code;
}
