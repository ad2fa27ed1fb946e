/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hostile input on the socket: malformed frames, protocol violations, a
 * client that never reads its replies and one that opens too many
 * connections. Each offender loses only its own connection; a well-behaved
 * client (through kyso-pkcs11.so) keeps working throughout, and kysod
 * stays up. Runs under with-kysod.sh with hostile.conf (small limits).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11-test.h"
#include "wire.h"

static const char *socket_path;
static P11Module good;
static CK_SESSION_HANDLE good_session;

static int raw_connect(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

static bool send_all(int fd, const void *p, size_t n)
{
        const uint8_t *b = p;

        while (n > 0) {
                ssize_t k = send(fd, b, n, MSG_NOSIGNAL);

                if (k <= 0)
                        return false;
                b += k;
                n -= (size_t) k;
        }
        return true;
}

/* Whether the daemon closed the connection (reads until end of file, up to timeout_ms). */
static bool closed_by_daemon(int fd, int timeout_ms)
{
        uint8_t buf[4096];

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t k;

                if (poll(&p, 1, timeout_ms) <= 0)
                        return false;
                k = recv(fd, buf, sizeof(buf), 0);
                if (k == 0 || (k < 0 && errno == ECONNRESET))
                        return true;
                if (k < 0)
                        return false;
        }
}

static void encode_hello(Buffer *b, uint32_t magic, uint32_t version)
{
        CK_ULONG out_version = 0, out_flags = 0;
        WireArg a[KYSO_WIRE_ARGS_MAX] = {
                { .value = magic }, { .value = version }, { .value = 1 }, { .ptr = &out_version }, { .ptr = &out_flags },
        };

        (void) wire_encode_request(b, 0, KYSO_CALL_HELLO, a);
}

/* A connection that has said hello properly. */
static int hello_connection(void)
{
        Buffer b;
        uint8_t reply[64];
        int fd = raw_connect();

        if (fd < 0)
                return -1;
        buffer_init(&b, 1024);
        encode_hello(&b, KYSO_WIRE_MAGIC, KYSO_WIRE_VERSION);
        if (!send_all(fd, b.data, b.len) || recv(fd, reply, sizeof(reply), 0) <= 0) {
                close(fd);
                fd = -1;
        }
        buffer_done(&b);
        return fd;
}

/* The well-behaved client still gets real answers. */
static bool good_client_works(void)
{
        CK_BYTE r[16];
        CK_SESSION_INFO si;

        return good.f->C_GenerateRandom(good_session, r, sizeof(r)) == CKR_OK &&
               good.f->C_GetSessionInfo(good_session, &si) == CKR_OK;
}

/*
 * Waits until the daemon stops reading fd: the bytes queued on our side stop
 * going down (checked over a few samples, for up to 20 s, so a slow daemon
 * under a sanitizer or valgrind gets there too).
 */
static bool wait_stalled(int fd)
{
        int last = -1, same = 0;

        for (unsigned i = 0; i < 200; i++) {
                int queued = 0;

                if (ioctl(fd, SIOCOUTQ, &queued) < 0)
                        return false;
                same = queued > 0 && queued == last ? same + 1 : 0;
                if (same >= 5)
                        return true;
                last = queued;
                usleep(100000);
        }
        return false;
}

/* A client of another uid (nobody), in a child process: it must be served whatever root's clients do. */
static bool other_uid_works(void)
{
        pid_t pid = fork();
        int status = 0;

        if (pid == 0) {
                P11Module m;
                CK_SLOT_ID slots[8];
                CK_ULONG n = 8;

                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(2);
                if (!p11t_load(&m, "kyso", p11t_env("KYSO_MODULE")) || p11t_initialize(m.f) != CKR_OK ||
                    m.f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || n == 0)
                        _exit(3);
                m.f->C_Finalize(NULL);
                _exit(0);
        }
        return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void offend(const char *what, const void *bytes, size_t n, bool after_hello)
{
        int fd = after_hello ? hello_connection() : raw_connect();
        bool closed;

        if (fd < 0) {
                p11t_ok(false, "%s: could not connect", what);
                return;
        }
        closed = send_all(fd, bytes, n) && closed_by_daemon(fd, 5000);
        close(fd);
        CHECK(closed, "%s: kysod closed that connection", what);
        CHECK(good_client_works(), "... and the other client kept working");
}

static size_t build_request(uint8_t *out, size_t cap, uint32_t call, const void *body, size_t body_len)
{
        uint32_t len = (uint32_t) (8 + body_len);

        if (12 + body_len > cap)
                return 0;
        out[0] = len >> 24, out[1] = len >> 16, out[2] = len >> 8, out[3] = (uint8_t) len;
        memset(out + 4, 0, 4); /* serial */
        out[8] = call >> 24, out[9] = call >> 16, out[10] = call >> 8, out[11] = (uint8_t) call;
        memcpy(out + 12, body, body_len);
        return 12 + body_len;
}

int main(void)
{
        CK_SLOT_ID slot;
        uint8_t frame[256];
        size_t n;
        Buffer b;
        int fds[64], n_fds = 0;

        socket_path = p11t_env("KYSO_SOCKET");
        if (!CHECK(p11t_load(&good, "kyso", p11t_env("KYSO_MODULE")), "load kyso-pkcs11.so"))
                return p11t_summary();
        CHECK_OK(p11t_initialize(good.f), "C_Initialize");
        CHECK_OK(p11t_find_slot(good.f, p11t_env("KYSO_TEST_LABEL"), &slot), "find the token");
        CHECK_OK(p11t_open_login(good.f, slot, p11t_env("KYSO_TEST_PIN"), &good_session), "open a session, log in");

        /* Frame headers. */
        offend("a header claiming 2 GiB", "\x7f\xff\xff\xff", 4, false);
        offend("a header claiming 17 MiB (over the frame limit)", "\x01\x10\x00\x00", 4, false);
        offend("a header too short for a payload", "\x00\x00\x00\x03xyz", 7, false);

        /* The handshake. */
        n = build_request(frame, sizeof(frame), KYSO_CALL_C_GetSlotList, "\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00", 10);
        offend("a call before HELLO", frame, n, false);
        buffer_init(&b, 1024);
        encode_hello(&b, 0x12345678, KYSO_WIRE_VERSION);
        offend("HELLO with a wrong magic number", b.data, b.len, false);
        buffer_done(&b);

        /* Requests after a proper HELLO. */
        n = build_request(frame, sizeof(frame), 9999, "", 0);
        offend("an unknown call id", frame, n, true);
        n = build_request(frame, sizeof(frame), KYSO_CALL_C_GetSlotList, "\x01\x00\x00", 3);
        offend("a truncated request", frame, n, true);
        n = build_request(frame, sizeof(frame), KYSO_CALL_C_GetSlotList,
                          "\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff", 12);
        offend("a request with trailing bytes", frame, n, true);
        n = build_request(frame, sizeof(frame), KYSO_CALL_HELLO, "", 0);
        offend("a second HELLO, malformed", frame, n, true);
        {
                /* A template claiming four billion attributes. */
                static const uint8_t body[] = { 0, 0, 0, 0, 0, 0, 0, 1, /* session */
                                                1, 0xff, 0xff, 0xff, 0xff };
                n = build_request(frame, sizeof(frame), KYSO_CALL_C_FindObjectsInit, body, sizeof(body));
                offend("a template count of 2^32-1", frame, n, true);
        }

        /* Half a frame, then the client goes away: nothing waits for the rest. */
        {
                int fd = hello_connection();

                CHECK(fd >= 0 && send_all(fd, "\x00\x00\x01\x00" "abcd", 8), "send half a frame");
                if (fd >= 0)
                        close(fd);
                CHECK(good_client_works(), "... the other client kept working after it vanished");
        }

        /* A client that sends requests and never reads the answers: the daemon stops reading it once its
         * replies pile up (hostile.conf: 128 KiB for its uid, 256 KiB for one connection), so what it can
         * queue is bounded. The budget is its user's: another connection of the same uid stalls too
         * (after its HELLO), while another user is served; when the flooder goes, the stalled one resumes. */
        {
                int fd = hello_connection(), same = -1;
                size_t accepted = 0;
                uint8_t req[32], reply[256];
                static const uint8_t slots_query[] = { 1, 1, 0, 0, 0, 0, 0, 0, 0, 0 }; /* tokenPresent, a length query */
                size_t m;

                if (fd >= 0) {
                        int flags = fcntl(fd, F_GETFL);

                        (void) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
                        for (unsigned i = 0; i < 200000; i++) {
                                /* DAEMON_STATUS offering a 1 MiB buffer ('o': not a query, capacity 2^20). */
                                static const uint8_t q[] = { 0, 0, 0, 0, 0, 0, 0x10, 0, 0 };
                                uint8_t st[32];
                                size_t k = build_request(st, sizeof(st), KYSO_CALL_DAEMON_STATUS, q, sizeof(q));
                                ssize_t sent = send(fd, st, k, MSG_NOSIGNAL);

                                if (sent < (ssize_t) k)
                                        break;
                                accepted++;
                        }
                }
                CHECK(fd >= 0 && accepted < 200000,
                      "a client that never reads is stopped: the daemon took %zu requests, then stopped reading",
                      accepted);
                CHECK(fd >= 0 && wait_stalled(fd), "... its unread requests stay queued: the daemon stopped reading it");

                CHECK(other_uid_works(), "... a client of another uid is served meanwhile");

                same = hello_connection();
                m = build_request(req, sizeof(req), KYSO_CALL_C_GetSlotList, slots_query, sizeof(slots_query));
                CHECK(same >= 0 && send_all(same, req, m), "another connection of the same uid said hello and asked");
                {
                        struct pollfd p = { .fd = same, .events = POLLIN };

                        CHECK(same >= 0 && poll(&p, 1, 1000) == 0,
                              "... and is not answered while its user's budget is used up");
                }
                if (fd >= 0)
                        close(fd);
                {
                        struct pollfd p = { .fd = same, .events = POLLIN };
                        bool answered = same >= 0 && poll(&p, 1, 5000) == 1 && recv(same, reply, sizeof(reply), 0) > 0;

                        CHECK(answered, "when the flooder is gone, the stalled connection is answered");
                }
                if (same >= 0)
                        close(same);
                CHECK(good_client_works(), "... and the first well-behaved client works again");
        }

        /* Too many connections of one uid: the ones over the limit are closed at once. */
        for (n_fds = 0; n_fds < 20; n_fds++) {
                fds[n_fds] = hello_connection();
                if (fds[n_fds] < 0)
                        break;
        }
        CHECK(n_fds < 20, "connections over the per-uid limit are refused (%d accepted of 20)", n_fds);
        for (int i = 0; i < n_fds; i++)
                close(fds[i]);
        usleep(200000);
        CHECK(good_client_works(), "... and once they are gone, the other client still works");
        {
                int fd = hello_connection();

                CHECK(fd >= 0, "a new connection is accepted again after they closed");
                if (fd >= 0)
                        close(fd);
        }

        good.f->C_CloseSession(good_session);
        good.f->C_Finalize(NULL);
        return p11t_summary();
}
