/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A virtual smart card for the integration tests: libcacard's emulated CAC card, backed by an NSS
 * database of certificates and keys, put into vsmartcard's vpcd reader (a pcscd driver) over TCP.
 * pcscd, OpenSC and everything above them then see a real card in a real reader.
 *
 *   vcard-vpcd --port PORT --nssdb DIR --certs NICK1[,NICK2[,NICK3]] [--host ADDR] [--reader NAME]
 *
 * The NSS database's password is the card's PIN. vpcd (in server mode: reader.conf.d
 * "DEVICENAME /dev/null:PORT") listens on PORT; this program connects to it and answers until it
 * is stopped (SIGTERM, SIGINT), retrying the connection every 100 ms while vpcd is not there.
 *
 * Card removal and insertion, as a user pulling the card out of the reader and putting it back:
 *
 *   SIGUSR1  remove: close the connection (vpcd then reports no card) and power the card off,
 *            which logs it out; stay disconnected until SIGUSR2
 *   SIGUSR2  insert: connect again (vpcd powers the card on)
 *
 * vpcd's protocol: every message is a 2-byte big-endian length and that many bytes. A 1-byte
 * message is a control: 0 power off, 1 power on, 2 reset, 4 send the ATR (answered with the ATR);
 * anything longer is a command APDU, answered with the response APDU.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libcacard.h>

#define VPCD_CTRL_OFF 0
#define VPCD_CTRL_ON 1
#define VPCD_CTRL_RESET 2
#define VPCD_CTRL_ATR 4
#define RECONNECT_MS 100

static VReader *reader;
static unsigned char atr[64];
static int atr_len;

/* Connects to vpcd; -errno if nothing listens yet. */
static int vpcd_connect(const char *host, const char *port)
{
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
        int fd = -ECONNREFUSED, one = 1;

        if (getaddrinfo(host, port, &hints, &res) != 0)
                return -EHOSTUNREACH;
        for (ai = res; ai; ai = ai->ai_next) {
                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
                if (fd < 0) {
                        fd = -errno;
                        continue;
                }
                if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
                        break;
                close(fd);
                fd = -errno;
        }
        freeaddrinfo(res);
        /* Every message is a request answered at once: never let Nagle hold a reply back. */
        if (fd >= 0)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
}

/* Reads exactly n bytes: 1 done, 0 the peer closed, -errno failed. */
static int read_full(int fd, unsigned char *buf, size_t n)
{
        int one = 1;

        while (n > 0) {
                ssize_t k = recv(fd, buf, n, 0);

                if (k == 0)
                        return 0;
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += k;
                n -= (size_t) k;
        }
        /* The kernel turns quick-ACK off again by itself: ask after every read, or the peer's next
         * request waits for a delayed ACK (~40 ms) behind our reply. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
        return 1;
}

/* Sends a length-prefixed message in one write (see read_full for why it matters). */
static int send_message(int fd, unsigned char *msg, size_t payload_len)
{
        size_t n = payload_len + 2, off = 0;

        msg[0] = (unsigned char) (payload_len >> 8);
        msg[1] = (unsigned char) payload_len;
        while (off < n) {
                ssize_t k = send(fd, msg + off, n - off, MSG_NOSIGNAL);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                off += (size_t) k;
        }
        return 0;
}

static void power_on(void)
{
        int len = (int) sizeof(atr);

        if (vreader_power_on(reader, atr, &len) == VREADER_OK)
                atr_len = len;
}

/* Answers one message from vpcd: 1 go on, 0 vpcd closed the connection, -errno failed. */
static int serve_one(int fd)
{
        static unsigned char req[65536], reply[2 + 65536 + 2];
        unsigned char hdr[2];
        size_t len;
        int r, rlen;

        r = read_full(fd, hdr, 2);
        if (r <= 0)
                return r;
        len = (size_t) hdr[0] << 8 | hdr[1];
        if (len == 0)
                return 1;
        r = read_full(fd, req, len);
        if (r <= 0)
                return r;

        if (len == 1) {
                switch (req[0]) {
                case VPCD_CTRL_OFF:
                        (void) vreader_power_off(reader);
                        return 1;
                case VPCD_CTRL_ON:
                case VPCD_CTRL_RESET: /* a power-on resets the card */
                        power_on();
                        return 1;
                case VPCD_CTRL_ATR:
                        memcpy(reply + 2, atr, (size_t) atr_len);
                        r = send_message(fd, reply, (size_t) atr_len);
                        return r < 0 ? r : 1;
                default:
                        fprintf(stderr, "vcard-vpcd: ignoring unknown control byte %u\n", req[0]);
                        return 1;
                }
        }

        rlen = (int) sizeof(reply) - 2;
        if (vreader_xfr_bytes(reader, req, (int) len, reply + 2, &rlen) != VREADER_OK) {
                reply[2] = 0x6f; /* no precise diagnosis */
                reply[3] = 0x00;
                rlen = 2;
        }
        r = send_message(fd, reply, (size_t) rlen);
        return r < 0 ? r : 1;
}

static void usage(FILE *f)
{
        fputs("Usage: vcard-vpcd --port PORT --nssdb DIR --certs NICK1[,NICK2,NICK3] [--host ADDR] "
              "[--reader NAME]\n"
              "SIGUSR1 removes the card (closes the connection), SIGUSR2 inserts it again.\n",
                f);
}

/* libcacard's option syntax has no escapes: refuse what would change its meaning. */
static bool option_safe(const char *s, const char *forbidden)
{
        return *s && strpbrk(s, forbidden) == NULL;
}

int main(int argc, char *argv[])
{
        static const struct option longopts[] = {
                { "host", required_argument, NULL, 'H' },
                { "port", required_argument, NULL, 'p' },
                { "nssdb", required_argument, NULL, 'd' },
                { "certs", required_argument, NULL, 'c' },
                { "reader", required_argument, NULL, 'r' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *host = "127.0.0.1", *port = NULL, *nssdb = NULL, *certs = NULL, *name = "kyso-vcard";
        VCardEmulOptions *emul_options;
        bool inserted = true, connected_once = false;
        int c, fd = -1, sfd;
        char *args;
        sigset_t mask;
        VEvent *ev;

        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
                switch (c) {
                case 'H':
                        host = optarg;
                        break;
                case 'p':
                        port = optarg;
                        break;
                case 'd':
                        nssdb = optarg;
                        break;
                case 'c':
                        certs = optarg;
                        break;
                case 'r':
                        name = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_SUCCESS;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!port || !nssdb || !certs || optind != argc || !option_safe(nssdb, "\"") ||
                !option_safe(certs, "() \t\"") || !option_safe(name, ",() \t\"")) {
                usage(stderr);
                return 2;
        }

        if (asprintf(&args, "db=\"sql:%s\" use_hw=no soft=(,%s,CAC,,%s)", nssdb, name, certs) < 0)
                return EXIT_FAILURE;
        emul_options = vcard_emul_options(args);
        free(args);
        if (!emul_options || vcard_emul_init(emul_options) != VCARD_EMUL_OK) {
                fprintf(stderr, "vcard-vpcd: no card from the NSS database %s with certificates %s\n", nssdb,
                        certs);
                return EXIT_FAILURE;
        }
        reader = vreader_get_reader_by_name(name);
        if (!reader)
                return EXIT_FAILURE;
        while ((ev = vevent_get_next_vevent()))
                vevent_delete(ev); /* nobody listens for libcacard's own reader events */
        power_on();
        if (atr_len <= 0) {
                fprintf(stderr, "vcard-vpcd: the card gave no ATR\n");
                return EXIT_FAILURE;
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGUSR1);
        sigaddset(&mask, SIGUSR2);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
                perror("vcard-vpcd: signalfd");
                return EXIT_FAILURE;
        }
        fprintf(stderr, "vcard-vpcd: card in reader \"%s\", serving vpcd at %s:%s\n", name, host, port);

        for (;;) {
                struct pollfd p[2] = { { .fd = sfd, .events = POLLIN }, { .fd = fd, .events = POLLIN } };
                struct signalfd_siginfo si;
                int r;

                if (inserted && fd < 0) {
                        fd = vpcd_connect(host, port);
                        if (fd >= 0) {
                                fprintf(stderr, "vcard-vpcd: %s\n",
                                        connected_once ? "card inserted (connected)" : "connected");
                                connected_once = true;
                        }
                        p[1].fd = fd;
                }
                r = poll(p, 2, inserted && fd < 0 ? RECONNECT_MS : -1);
                if (r < 0 && errno != EINTR) {
                        perror("vcard-vpcd: poll");
                        break;
                }
                if (p[0].revents & POLLIN) {
                        if (read(sfd, &si, sizeof(si)) != (ssize_t) sizeof(si))
                                continue;
                        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                                break;
                        if (si.ssi_signo == SIGUSR1 && inserted) {
                                inserted = false;
                                if (fd >= 0)
                                        close(fd);
                                fd = -1;
                                (void) vreader_power_off(reader); /* a pulled card forgets its login */
                                fprintf(stderr, "vcard-vpcd: card removed (disconnected)\n");
                        } else if (si.ssi_signo == SIGUSR2 && !inserted) {
                                inserted = true;
                        }
                        continue;
                }
                if (fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
                        r = serve_one(fd);
                        if (r <= 0) {
                                fprintf(stderr, "vcard-vpcd: vpcd %s; reconnecting\n",
                                        r == 0 ? "closed the connection" : strerror(-r));
                                close(fd);
                                fd = -1;
                                usleep(RECONNECT_MS * 1000);
                        }
                }
        }

        if (fd >= 0)
                close(fd);
        vreader_free(reader);
        vcard_emul_finalize();
        return EXIT_SUCCESS;
}
