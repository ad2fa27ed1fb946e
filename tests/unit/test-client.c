/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The client side of kyso-pkcs11.so against an in-process fake daemon that
 * speaks the real protocol through common/wire.c: handshake, concurrent
 * calls whose replies come back out of order, a blocking
 * C_WaitForSlotEvent beside other calls, the daemon dying and coming back,
 * no daemon at all, fork(), and local paging of search results.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "buffer.h"
#include "macro.h"
#include "module.h"
#include "wire.h"

#define FIND_COUNT 5U
#define FIND_OFFSET 1000U
#define REPLY_BATCH_MAX 64U

typedef struct Fake Fake;

typedef struct FakeConn {
        Fake *fake;
        int fd;
        pthread_t thread;
        pthread_mutex_t write_lock;
        CK_ULONG handle_base;
        CK_ULONG next_handle;
        bool done;
} FakeConn;

struct Fake {
        char dir[64];
        char path[128];
        int listen_fd;
        pthread_t accept_thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint32_t server_flags;
        bool reorder;   /* hold replies while more requests come, then send them newest first */
        FakeConn *conns[64];
        unsigned n_conns;
        CK_ULONG hello_bases[64];
        unsigned n_hellos;
        unsigned out_of_order; /* replies sent with a serial lower than the one before */
        /* A parked blocking C_WaitForSlotEvent. */
        FakeConn *parked_conn;
        uint32_t parked_serial;
        bool parked;
};

static CK_FUNCTION_LIST_3_0 *p11;
static CK_FUNCTION_LIST *p11_2_40;
static Fake *fake;

static uint64_t now_msec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000U + (uint64_t) ts.tv_nsec / 1000000U;
}

static int read_exact(int fd, void *p, size_t n)
{
        uint8_t *b = p;

        while (n > 0) {
                ssize_t k = read(fd, b, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -1;
                b += k;
                n -= (size_t) k;
        }
        return 0;
}

static void write_all(FakeConn *fc, const uint8_t *p, size_t n)
{
        pthread_mutex_lock(&fc->write_lock);
        while (n > 0) {
                ssize_t k = send(fc->fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                p += k;
                n -= (size_t) k;
        }
        pthread_mutex_unlock(&fc->write_lock);
}

/* Fills an output with PKCS#11 length semantics ('o' and 'l' as the server decoder hands them over). */
static CK_RV fill_output(WireArg *a, const void *data, CK_ULONG n, size_t unit)
{
        CK_ULONG capacity = *a->len_ptr;

        *a->len_ptr = n;
        if (!a->ptr)
                return CKR_OK;
        if (capacity < n)
                return CKR_BUFFER_TOO_SMALL;
        memcpy(a->ptr, data, n * unit);
        return CKR_OK;
}

enum { ACT_REPLY, ACT_PARK, ACT_KILL, ACT_GARBAGE };

static int fake_handle(FakeConn *fc, uint32_t serial, WireCall call, WireArg *args, Arena *arena, CK_RV *ret_rv)
{
        Fake *f = fc->fake;
        static const CK_SLOT_ID slots[] = { 1, 2 };
        static const uint8_t sig[64] = { 0x5a };

        *ret_rv = CKR_OK;
        switch (call) {
        case KYSO_CALL_HELLO:
                if (args[0].value != KYSO_WIRE_MAGIC || args[1].value != KYSO_WIRE_VERSION) {
                        *ret_rv = CKR_GENERAL_ERROR;
                        return ACT_REPLY;
                }
                pthread_mutex_lock(&f->lock);
                if (f->n_hellos < ELEMENTSOF(f->hello_bases))
                        f->hello_bases[f->n_hellos++] = args[2].value;
                pthread_cond_broadcast(&f->cond);
                pthread_mutex_unlock(&f->lock);
                fc->handle_base = fc->next_handle = args[2].value;
                *(CK_ULONG *) args[3].ptr = KYSO_WIRE_VERSION;
                *(CK_ULONG *) args[4].ptr = f->server_flags;
                return ACT_REPLY;
        case KYSO_CALL_C_GetSlotList:
                *ret_rv = fill_output(&args[1], slots, ELEMENTSOF(slots), sizeof(CK_ULONG));
                return ACT_REPLY;
        case KYSO_CALL_C_GenerateRandom:
                /* Content derived from the session, so the caller can tell a misrouted reply. */
                for (CK_ULONG i = 0; i < args[1].len; i++)
                        ((uint8_t *) args[1].ptr)[i] = (uint8_t) (args[0].value * 31U + i);
                return ACT_REPLY;
        case KYSO_CALL_C_Sign:
                *ret_rv = fill_output(&args[2], sig, sizeof(sig), 1);
                return ACT_REPLY;
        case KYSO_CALL_C_OpenSession:
                *(CK_ULONG *) args[2].ptr = fc->next_handle++;
                return ACT_REPLY;
        case KYSO_CALL_C_CloseSession:
        case KYSO_CALL_C_CloseAllSessions:
                return ACT_REPLY;
        case KYSO_CALL_C_FindObjectsInit: {
                CK_OBJECT_HANDLE *h = arena_alloc_array(arena, FIND_COUNT, sizeof(*h));
                for (unsigned i = 0; h && i < FIND_COUNT; i++)
                        h[i] = fc->handle_base + FIND_OFFSET + i;
                args[2].ptr = h;
                args[2].len = FIND_COUNT;
                return ACT_REPLY;
        }
        case KYSO_CALL_C_WaitForSlotEvent:
                if (args[0].value & CKF_DONT_BLOCK) {
                        *ret_rv = CKR_NO_EVENT;
                        return ACT_REPLY;
                }
                pthread_mutex_lock(&f->lock);
                f->parked_conn = fc;
                f->parked_serial = serial;
                f->parked = true;
                pthread_cond_broadcast(&f->cond);
                pthread_mutex_unlock(&f->lock);
                return ACT_PARK;
        case KYSO_CALL_C_Logout:
                /* The daemon dies in the middle of this call. */
                return ACT_KILL;
        case KYSO_CALL_C_SeedRandom:
                return ACT_GARBAGE;
        default:
                *ret_rv = CKR_FUNCTION_NOT_SUPPORTED;
                return ACT_REPLY;
        }
}

typedef struct Pending {
        uint32_t serial;
        uint8_t *data;
        size_t len;
} Pending;

static void flush_pending(FakeConn *fc, Pending *p, unsigned *n)
{
        Buffer all;

        buffer_init(&all, SIZE_MAX);
        /* Newest first: everything held back goes out in reverse order, in one write. */
        for (unsigned i = *n; i > 0; i--) {
                buffer_add_bytes(&all, p[i - 1].data, p[i - 1].len);
                if (i < *n && p[i - 1].serial < p[i].serial) {
                        pthread_mutex_lock(&fc->fake->lock);
                        fc->fake->out_of_order++;
                        pthread_mutex_unlock(&fc->fake->lock);
                }
                free(p[i - 1].data);
        }
        if (buffer_ok(&all) && all.len > 0)
                write_all(fc, all.data, all.len);
        buffer_done(&all);
        *n = 0;
}

static void *conn_thread(void *userdata)
{
        FakeConn *fc = userdata;
        Pending pending[REPLY_BATCH_MAX];
        unsigned n_pending = 0;

        for (;;) {
                uint8_t header[KYSO_WIRE_HEADER_SIZE], *payload;
                WireArg args[KYSO_WIRE_ARGS_MAX] = {};
                uint32_t serial = 0;
                WireCall call;
                Arena *arena;
                Buffer out;
                size_t len;
                CK_RV rv;
                int action, r;

                if (fc->fake->reorder && n_pending > 0) {
                        struct pollfd pfd = { .fd = fc->fd, .events = POLLIN };
                        /* Hold replies while more requests arrive, so they overtake each other. */
                        if (n_pending >= REPLY_BATCH_MAX || poll(&pfd, 1, 2) == 0)
                                flush_pending(fc, pending, &n_pending);
                }

                if (read_exact(fc->fd, header, sizeof(header)) < 0 || wire_frame_length(header, &len) < 0)
                        break;
                payload = malloc(len);
                if (!payload || read_exact(fc->fd, payload, len) < 0) {
                        free(payload);
                        break;
                }
                arena = arena_new(KYSO_WIRE_FRAME_MAX * 2U);
                r = wire_decode_request(payload, len, arena, &serial, &call, args);
                if (r < 0) {
                        free(payload);
                        arena_free(arena);
                        break;
                }

                action = fake_handle(fc, serial, call, args, arena, &rv);
                if (action == ACT_PARK) {
                        arena_free(arena);
                        free(payload); /* the arguments point into it */
                        continue;
                }
                if (action == ACT_KILL) {
                        arena_free(arena);
                        free(payload); /* the arguments point into it */
                        break;
                }
                buffer_init(&out, KYSO_WIRE_FRAME_MAX + KYSO_WIRE_HEADER_SIZE);
                if (action == ACT_GARBAGE) {
                        /* A reply to this serial and call, cut short before its CK_RV: malformed. */
                        buffer_add_u32(&out, 8);
                        buffer_add_u32(&out, serial);
                        buffer_add_u32(&out, (uint32_t) call);
                        r = 0;
                } else
                        r = wire_encode_reply(&out, serial, call, rv, args);
                arena_free(arena);
                free(payload);
                if (r < 0 || !buffer_ok(&out)) {
                        buffer_done(&out);
                        break;
                }
                if (fc->fake->reorder && call != KYSO_CALL_HELLO) {
                        pending[n_pending++] = (Pending) { serial, out.data, out.len };
                        out.data = NULL; /* taken over */
                        out.len = out.alloc = out.dirty = 0;
                } else
                        write_all(fc, out.data, out.len);
                buffer_done(&out);
        }

        flush_pending(fc, pending, &n_pending);
        shutdown(fc->fd, SHUT_RDWR);
        pthread_mutex_lock(&fc->fake->lock);
        fc->done = true;
        if (fc->fake->parked_conn == fc)
                fc->fake->parked = false;
        pthread_mutex_unlock(&fc->fake->lock);
        return NULL;
}

static void *accept_thread(void *userdata)
{
        Fake *f = userdata;

        for (;;) {
                int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                FakeConn *fc;

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        break;
                }
                fc = calloc(1, sizeof(*fc));
                assert_non_null(fc);
                fc->fake = f;
                fc->fd = fd;
                pthread_mutex_init(&fc->write_lock, NULL);
                pthread_mutex_lock(&f->lock);
                assert_true(f->n_conns < ELEMENTSOF(f->conns));
                f->conns[f->n_conns++] = fc;
                pthread_mutex_unlock(&f->lock);
                assert_int_equal(pthread_create(&fc->thread, NULL, conn_thread, fc), 0);
        }
        return NULL;
}

static void fake_listen(Fake *f)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(f->listen_fd >= 0);
        strcpy(sa.sun_path, f->path);
        assert_int_equal(bind(f->listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->listen_fd, 64), 0);
        assert_int_equal(pthread_create(&f->accept_thread, NULL, accept_thread, f), 0);
}

/* Stops accepting and cuts every connection, as a dying daemon does. */
static void fake_kill(Fake *f)
{
        shutdown(f->listen_fd, SHUT_RDWR);
        pthread_join(f->accept_thread, NULL);
        close(f->listen_fd);
        f->listen_fd = -1;
        unlink(f->path);
        for (unsigned i = 0; i < f->n_conns; i++) {
                shutdown(f->conns[i]->fd, SHUT_RDWR);
                pthread_join(f->conns[i]->thread, NULL);
                close(f->conns[i]->fd);
                pthread_mutex_destroy(&f->conns[i]->write_lock);
                free(f->conns[i]);
        }
        f->n_conns = 0;
        f->parked_conn = NULL;
        f->parked = false;
}

static Fake *fake_new(uint32_t server_flags, bool reorder)
{
        Fake *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        strcpy(f->dir, "/tmp/kyso-test-client-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/pkcs11.sock", f->dir);
        f->server_flags = server_flags;
        f->reorder = reorder;
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->cond, NULL);
        fake_listen(f);
        assert_int_equal(setenv("KYSO_SOCKET", f->path, 1), 0);
        return f;
}

static Fake *fake_free(Fake *f)
{
        if (!f)
                return NULL;
        if (f->listen_fd >= 0)
                fake_kill(f);
        pthread_mutex_destroy(&f->lock);
        pthread_cond_destroy(&f->cond);
        rmdir(f->dir);
        free(f);
        return NULL;
}

static unsigned fake_hellos(Fake *f)
{
        unsigned n;

        pthread_mutex_lock(&f->lock);
        n = f->n_hellos;
        pthread_mutex_unlock(&f->lock);
        return n;
}

static void fake_wait_parked(Fake *f)
{
        pthread_mutex_lock(&f->lock);
        while (!f->parked)
                pthread_cond_wait(&f->cond, &f->lock);
        pthread_mutex_unlock(&f->lock);
}

/* Answers the parked C_WaitForSlotEvent: a token arrived in slot. */
static void fake_slot_event(Fake *f, CK_SLOT_ID slot)
{
        WireArg args[2] = { { .value = 0 }, { .value = slot } };
        FakeConn *fc;
        uint32_t serial;
        Buffer out;

        pthread_mutex_lock(&f->lock);
        assert_true(f->parked);
        fc = f->parked_conn;
        serial = f->parked_serial;
        f->parked = false;
        pthread_mutex_unlock(&f->lock);

        buffer_init(&out, KYSO_WIRE_FRAME_MAX);
        assert_int_equal(wire_encode_reply(&out, serial, KYSO_CALL_C_WaitForSlotEvent, CKR_OK, args), 0);
        write_all(fc, out.data, out.len);
        buffer_done(&out);
}

static void initialize(void)
{
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

        assert_int_equal(p11->C_Initialize(&args), CKR_OK);
}

static int setup_fake(void **state)
{
        fake = fake_new(KYSO_SERVER_FLAG_BLOCKING_SLOT_EVENTS, false);
        return 0;
}

static int setup_fake_reorder(void **state)
{
        fake = fake_new(KYSO_SERVER_FLAG_BLOCKING_SLOT_EVENTS, true);
        return 0;
}

static int setup_fake_nonblocking(void **state)
{
        fake = fake_new(0, false);
        return 0;
}

static int teardown_fake(void **state)
{
        (void) p11->C_Finalize(NULL);
        fake = fake_free(fake);
        return 0;
}

/* ---- Tests ---- */

static void test_interfaces(void **state)
{
        CK_INTERFACE list[2], *iface;
        CK_VERSION v2 = { 2, 40 }, v3 = { 3, 0 }, v9 = { 9, 9 };
        CK_FUNCTION_LIST *f;
        CK_ULONG n = 0;

        assert_int_equal(C_GetInterfaceList(NULL, &n), CKR_OK);
        assert_int_equal(n, 2);
        n = 1;
        assert_int_equal(C_GetInterfaceList(list, &n), CKR_BUFFER_TOO_SMALL);
        assert_int_equal(n, 2);
        assert_int_equal(C_GetInterfaceList(list, &n), CKR_OK);
        assert_string_equal((char *) list[0].pInterfaceName, "PKCS 11");
        assert_int_equal(C_GetInterfaceList(list, NULL), CKR_ARGUMENTS_BAD);

        assert_int_equal(C_GetInterface(NULL, NULL, &iface, 0), CKR_OK);
        assert_int_equal(((CK_VERSION *) iface->pFunctionList)->major, 3);
        assert_int_equal(C_GetInterface((CK_UTF8CHAR *) "PKCS 11", &v2, &iface, 0), CKR_OK);
        assert_int_equal(((CK_VERSION *) iface->pFunctionList)->major, 2);
        assert_int_equal(((CK_VERSION *) iface->pFunctionList)->minor, 40);
        assert_int_equal(C_GetInterface((CK_UTF8CHAR *) "PKCS 11", &v3, &iface, 0), CKR_OK);
        assert_int_equal(C_GetInterface(NULL, &v9, &iface, 0), CKR_ARGUMENTS_BAD);
        assert_int_equal(C_GetInterface((CK_UTF8CHAR *) "Vendor", NULL, &iface, 0), CKR_ARGUMENTS_BAD);
        assert_int_equal(C_GetInterface(NULL, NULL, &iface, CKF_INTERFACE_FORK_SAFE), CKR_ARGUMENTS_BAD);
        assert_int_equal(C_GetInterface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);

        assert_int_equal(C_GetFunctionList(&f), CKR_OK);
        assert_int_equal(f->version.major, 2);
        assert_ptr_equal(f, p11_2_40);
        assert_int_equal(C_GetFunctionList(NULL), CKR_ARGUMENTS_BAD);
}

static void test_not_initialized(void **state)
{
        CK_C_INITIALIZE_ARGS args = {};
        CK_ULONG n;
        CK_INFO info;
        CK_SLOT_ID slot;

        assert_int_equal(p11->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_int_equal(p11->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_int_equal(p11->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_int_equal(p11->C_WaitForSlotEvent(0, &slot, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_int_equal(p11->C_FindObjects(1, &slot, 1, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_int_equal(p11->C_GetFunctionStatus(1), CKR_CRYPTOKI_NOT_INITIALIZED);

        /* Argument checks come before any connection. */
        args.pReserved = &args;
        assert_int_equal(p11->C_Initialize(&args), CKR_ARGUMENTS_BAD);
        args = (CK_C_INITIALIZE_ARGS) { .CreateMutex = (CK_CREATEMUTEX) 1 };
        assert_int_equal(p11->C_Initialize(&args), CKR_ARGUMENTS_BAD);
        args = (CK_C_INITIALIZE_ARGS) { .CreateMutex = (CK_CREATEMUTEX) 1, .DestroyMutex = (CK_DESTROYMUTEX) 1,
                                        .LockMutex = (CK_LOCKMUTEX) 1, .UnlockMutex = (CK_UNLOCKMUTEX) 1 };
        assert_int_equal(p11->C_Initialize(&args), CKR_CANT_LOCK);
}

static void test_hello_and_call(void **state)
{
        CK_C_INITIALIZE_ARGS args = { .CreateMutex = (CK_CREATEMUTEX) 1, .DestroyMutex = (CK_DESTROYMUTEX) 1,
                                      .LockMutex = (CK_LOCKMUTEX) 1, .UnlockMutex = (CK_UNLOCKMUTEX) 1,
                                      .flags = CKF_OS_LOCKING_OK };
        CK_SLOT_ID slots[4];
        CK_ULONG n = 0;
        CK_INFO info;
        uint8_t sig[64];

        assert_int_equal(p11->C_Initialize(&args), CKR_OK);
        assert_int_equal(fake_hellos(fake), 1);
        assert_int_equal(p11->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);

        assert_int_equal(p11->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
        assert_int_equal(n, 2);
        n = 1;
        assert_int_equal(p11->C_GetSlotList(CK_FALSE, slots, &n), CKR_BUFFER_TOO_SMALL);
        assert_int_equal(n, 2);
        n = ELEMENTSOF(slots);
        assert_int_equal(p11->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK);
        assert_int_equal(n, 2);
        assert_int_equal(slots[0], 1);
        assert_int_equal(slots[1], 2);
        assert_int_equal(p11->C_GetSlotList(CK_FALSE, slots, NULL), CKR_ARGUMENTS_BAD);

        n = sizeof(sig);
        assert_int_equal(p11->C_Sign(1, (CK_BYTE *) "x", 1, sig, &n), CKR_OK);
        assert_int_equal(n, 64);
        assert_int_equal(sig[0], 0x5a);
        assert_int_equal(p11->C_Sign(1, (CK_BYTE *) "x", 1, sig, NULL), CKR_ARGUMENTS_BAD);
        assert_int_equal(p11->C_GetObjectSize(1, 2, NULL), CKR_ARGUMENTS_BAD);

        /* Answered locally, versions by list. */
        assert_int_equal(p11->C_GetInfo(&info), CKR_OK);
        assert_int_equal(info.cryptokiVersion.major, 3);
        assert_int_equal(info.cryptokiVersion.minor, 0);
        assert_memory_equal(info.manufacturerID, "kyso ", 5);
        assert_int_equal(p11_2_40->C_GetInfo(&info), CKR_OK);
        assert_int_equal(info.cryptokiVersion.major, 2);
        assert_int_equal(info.cryptokiVersion.minor, 40);
        assert_int_equal(p11->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
        assert_int_equal(p11->C_GetFunctionStatus(1), CKR_FUNCTION_NOT_PARALLEL);
        assert_int_equal(p11->C_CancelFunction(1), CKR_FUNCTION_NOT_PARALLEL);
        assert_int_equal(p11->C_OpenSession(1, CKF_RW_SESSION, NULL, NULL, &n), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
        assert_int_equal(p11->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);

        assert_int_equal(p11->C_Finalize(&n), CKR_ARGUMENTS_BAD);
        assert_int_equal(p11->C_Finalize(NULL), CKR_OK);
        assert_int_equal(p11->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
}

#define THREADS 16
#define CALLS_PER_THREAD 300

typedef struct Worker {
        pthread_t thread;
        CK_SESSION_HANDLE session;
        unsigned failures;
        CK_RV last_rv;
} Worker;

static void *random_worker(void *userdata)
{
        Worker *w = userdata;

        for (unsigned i = 0; i < CALLS_PER_THREAD; i++) {
                uint8_t buf[64];
                CK_ULONG len = 1 + (w->session + i) % sizeof(buf);
                CK_RV rv;

                memset(buf, 0, sizeof(buf));
                rv = p11->C_GenerateRandom(w->session, buf, len);
                if (rv != CKR_OK) {
                        w->failures++;
                        w->last_rv = rv;
                        continue;
                }
                for (CK_ULONG j = 0; j < len; j++)
                        if (buf[j] != (uint8_t) (w->session * 31U + j)) {
                                w->failures++;
                                break;
                        }
        }
        return NULL;
}

static void test_concurrent_out_of_order(void **state)
{
        Worker workers[THREADS] = {};

        initialize();
        for (unsigned i = 0; i < THREADS; i++) {
                workers[i].session = 100 + i;
                assert_int_equal(pthread_create(&workers[i].thread, NULL, random_worker, &workers[i]), 0);
        }
        for (unsigned i = 0; i < THREADS; i++) {
                pthread_join(workers[i].thread, NULL);
                assert_int_equal(workers[i].failures, 0);
        }
        /* One connection carried them all, and replies did overtake each other. */
        assert_int_equal(fake_hellos(fake), 1);
        pthread_mutex_lock(&fake->lock);
        assert_true(fake->out_of_order > 0);
        pthread_mutex_unlock(&fake->lock);
}

typedef struct SlotWaiter {
        pthread_t thread;
        CK_SLOT_ID slot;
        CK_RV rv;
} SlotWaiter;

static void *slot_waiter(void *userdata)
{
        SlotWaiter *sw = userdata;

        sw->rv = p11->C_WaitForSlotEvent(0, &sw->slot, NULL);
        return NULL;
}

static void test_blocking_wait_beside_calls(void **state)
{
        SlotWaiter sw = { .slot = 0 };
        CK_SLOT_ID slot = 0;

        initialize();
        assert_int_equal(p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT);
        assert_int_equal(p11->C_WaitForSlotEvent(0, NULL, NULL), CKR_ARGUMENTS_BAD);

        assert_int_equal(pthread_create(&sw.thread, NULL, slot_waiter, &sw), 0);
        fake_wait_parked(fake);
        /* The waiter may well hold the reader role now; nobody may wait for it. */
        for (unsigned i = 0; i < 200; i++) {
                uint8_t buf[8];
                assert_int_equal(p11->C_GenerateRandom(7, buf, sizeof(buf)), CKR_OK);
                assert_int_equal(buf[1], (uint8_t) (7 * 31 + 1));
        }
        fake_slot_event(fake, 42);
        pthread_join(sw.thread, NULL);
        assert_int_equal(sw.rv, CKR_OK);
        assert_int_equal(sw.slot, 42);

        /* C_Finalize wakes a blocked waiter, which reports the module as finalised. */
        assert_int_equal(pthread_create(&sw.thread, NULL, slot_waiter, &sw), 0);
        fake_wait_parked(fake);
        assert_int_equal(p11->C_Finalize(NULL), CKR_OK);
        pthread_join(sw.thread, NULL);
        assert_int_equal(sw.rv, CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void test_polled_wait_finalize(void **state)
{
        SlotWaiter sw = { .slot = 0 };
        uint64_t t;

        /* This daemon cannot block: the module polls, and C_Finalize still ends the wait at once. */
        initialize();
        assert_int_equal(pthread_create(&sw.thread, NULL, slot_waiter, &sw), 0);
        usleep(100 * 1000);
        t = now_msec();
        assert_int_equal(p11->C_Finalize(NULL), CKR_OK);
        pthread_join(sw.thread, NULL);
        assert_int_equal(sw.rv, CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_true(now_msec() - t < 400);
}

static void test_daemon_dies_and_returns(void **state)
{
        SlotWaiter sw = { .slot = 0 };
        CK_SESSION_HANDLE s1 = 0, s2 = 0;
        CK_OBJECT_HANDLE found[FIND_COUNT];
        CK_ULONG n = 0;
        unsigned hellos;

        initialize();
        assert_int_equal(p11->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &s1), CKR_OK);
        assert_int_equal(p11->C_FindObjectsInit(s1, NULL, 0), CKR_OK);
        assert_int_equal(p11->C_FindObjects(s1, found, FIND_COUNT, &n), CKR_OK);
        assert_int_equal(n, FIND_COUNT);

        /* A blocking waiter and a call in flight when the daemon dies: both see the device go. */
        assert_int_equal(pthread_create(&sw.thread, NULL, slot_waiter, &sw), 0);
        fake_wait_parked(fake);
        assert_int_equal(p11->C_Logout(s1), CKR_DEVICE_REMOVED);
        pthread_join(sw.thread, NULL);
        assert_int_equal(sw.rv, CKR_DEVICE_REMOVED);
        /* The daemon took the session with it: its search results are gone here too. */
        assert_int_equal(p11->C_FindObjects(s1, found, 1, &n), CKR_SESSION_HANDLE_INVALID);

        /* The next call reconnects by itself, with a handle base above everything handed out. */
        hellos = fake_hellos(fake);
        assert_int_equal(p11->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &s2), CKR_OK);
        assert_int_equal(fake_hellos(fake), hellos + 1);
        assert_true(fake->hello_bases[hellos] > found[FIND_COUNT - 1]);
        assert_true(fake->hello_bases[hellos] > s1);
        assert_true(s2 > found[FIND_COUNT - 1]);
        /* The old session's local state went with its connection. */
        assert_int_equal(p11->C_FindObjects(s1, found, 1, &n), CKR_SESSION_HANDLE_INVALID);

        /* The daemon is gone for good: calls fail, and nothing hangs. */
        fake_kill(fake);
        assert_int_equal(p11->C_Logout(s2), CKR_DEVICE_REMOVED);
        assert_int_equal(p11->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &s2), CKR_DEVICE_REMOVED);

        /* It comes back: the module reconnects. */
        fake_listen(fake);
        assert_int_equal(p11->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &s2), CKR_OK);
        assert_int_equal(p11->C_CloseSession(s2), CKR_OK);
}

static void test_malformed_reply(void **state)
{
        uint8_t buf[4];
        unsigned hellos;

        initialize();
        hellos = fake_hellos(fake);
        assert_int_equal(p11->C_SeedRandom(1, (CK_BYTE *) "seed", 4), CKR_DEVICE_ERROR);
        assert_int_equal(p11->C_GenerateRandom(3, buf, sizeof(buf)), CKR_OK);
        assert_int_equal(fake_hellos(fake), hellos + 1);
}

static void test_no_daemon(void **state)
{
        uint64_t t;

        assert_int_equal(setenv("KYSO_SOCKET", "/nonexistent/kyso/pkcs11.sock", 1), 0);
        t = now_msec();
        assert_int_equal(p11->C_Initialize(NULL), CKR_DEVICE_ERROR);
        assert_true(now_msec() - t < 500);
        assert_int_equal(p11->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void test_silent_daemon(void **state)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char dir[] = "/tmp/kyso-test-client-XXXXXX";
        uint64_t t;
        int fd;

        /* Something listens but never answers the HELLO: give up after the timeout, not never. */
        assert_non_null(mkdtemp(dir));
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", dir);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 4), 0);
        assert_int_equal(setenv("KYSO_SOCKET", sa.sun_path, 1), 0);
        t = now_msec();
        assert_int_equal(p11->C_Initialize(NULL), CKR_DEVICE_ERROR);
        t = now_msec() - t;
        assert_true(t >= 2000 && t < 6000);
        close(fd);
        unlink(sa.sun_path);
        rmdir(dir);
}

static int child_main(void)
{
        CK_ULONG n = 0;
        uint8_t buf[4];

        /* Inherited state is not ours: not initialised until we say so. */
        if (p11->C_GetSlotList(CK_FALSE, NULL, &n) != CKR_CRYPTOKI_NOT_INITIALIZED)
                return 10;
        if (p11->C_Initialize(NULL) != CKR_OK)
                return 11;
        if (p11->C_GetSlotList(CK_FALSE, NULL, &n) != CKR_OK || n != 2)
                return 12;
        if (p11->C_GenerateRandom(5, buf, sizeof(buf)) != CKR_OK || buf[0] != (uint8_t) (5 * 31))
                return 13;
        if (p11->C_Finalize(NULL) != CKR_OK)
                return 14;
        return 0;
}

static void test_fork(void **state)
{
        CK_ULONG n = 0;
        unsigned hellos;
        int status;
        pid_t pid;

        initialize();
        assert_int_equal(p11->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
        hellos = fake_hellos(fake);

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(child_main());
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(fake_hellos(fake), hellos + 1);

        /* The child closed its copy of our socket; ours still works on the same connection. */
        assert_int_equal(p11->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
        assert_int_equal(fake_hellos(fake), hellos + 1);
}

static void test_find_paging(void **state)
{
        CK_OBJECT_HANDLE h[FIND_COUNT + 1];
        CK_SESSION_HANDLE s = 0;
        CK_ULONG n = 99;

        initialize();
        assert_int_equal(p11->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);

        assert_int_equal(p11->C_FindObjects(s + 1000, h, 1, &n), CKR_SESSION_HANDLE_INVALID);
        assert_int_equal(p11->C_FindObjectsFinal(s + 1000), CKR_SESSION_HANDLE_INVALID);
        assert_int_equal(p11->C_FindObjects(s, h, 1, &n), CKR_OPERATION_NOT_INITIALIZED);
        assert_int_equal(p11->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);

        assert_int_equal(p11->C_FindObjectsInit(s, NULL, 0), CKR_OK);
        assert_int_equal(p11->C_FindObjectsInit(s, NULL, 0), CKR_OPERATION_ACTIVE);
        assert_int_equal(p11->C_FindObjects(s, NULL, 1, &n), CKR_ARGUMENTS_BAD);
        assert_int_equal(p11->C_FindObjects(s, h, 1, NULL), CKR_ARGUMENTS_BAD);

        assert_int_equal(p11->C_FindObjects(s, h, 2, &n), CKR_OK);
        assert_int_equal(n, 2);
        assert_int_equal(h[1] - h[0], 1);
        assert_int_equal(p11->C_FindObjects(s, h + 2, 2, &n), CKR_OK);
        assert_int_equal(n, 2);
        assert_int_equal(p11->C_FindObjects(s, h + 4, 2, &n), CKR_OK);
        assert_int_equal(n, 1);
        assert_int_equal(h[4] - h[0], FIND_COUNT - 1);
        assert_int_equal(p11->C_FindObjects(s, h, 2, &n), CKR_OK);
        assert_int_equal(n, 0);
        assert_int_equal(p11->C_FindObjectsFinal(s), CKR_OK);
        assert_int_equal(p11->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);
        assert_int_equal(p11->C_FindObjects(s, h, 1, &n), CKR_OPERATION_NOT_INITIALIZED);

        /* A new search after the last one ended; closing the session forgets it. */
        assert_int_equal(p11->C_FindObjectsInit(s, NULL, 0), CKR_OK);
        assert_int_equal(p11->C_CloseSession(s), CKR_OK);
        assert_int_equal(p11->C_FindObjects(s, h, 1, &n), CKR_SESSION_HANDLE_INVALID);

        /* C_CloseAllSessions forgets the slot's sessions. */
        assert_int_equal(p11->C_OpenSession(2, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
        assert_int_equal(p11->C_FindObjectsInit(s, NULL, 0), CKR_OK);
        assert_int_equal(p11->C_CloseAllSessions(2), CKR_OK);
        assert_int_equal(p11->C_FindObjects(s, h, 1, &n), CKR_SESSION_HANDLE_INVALID);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_interfaces),
                cmocka_unit_test(test_not_initialized),
                cmocka_unit_test_setup_teardown(test_hello_and_call, setup_fake, teardown_fake),
                cmocka_unit_test_setup_teardown(test_concurrent_out_of_order, setup_fake_reorder, teardown_fake),
                cmocka_unit_test_setup_teardown(test_blocking_wait_beside_calls, setup_fake_reorder, teardown_fake),
                cmocka_unit_test_setup_teardown(test_polled_wait_finalize, setup_fake_nonblocking, teardown_fake),
                cmocka_unit_test_setup_teardown(test_daemon_dies_and_returns, setup_fake, teardown_fake),
                cmocka_unit_test_setup_teardown(test_malformed_reply, setup_fake, teardown_fake),
                cmocka_unit_test(test_no_daemon),
                cmocka_unit_test(test_silent_daemon),
                cmocka_unit_test_setup_teardown(test_fork, setup_fake, teardown_fake),
                cmocka_unit_test_setup_teardown(test_find_paging, setup_fake, teardown_fake),
        };
        CK_INTERFACE *iface;

        if (C_GetInterface(NULL, NULL, &iface, 0) != CKR_OK)
                return 1;
        p11 = iface->pFunctionList;
        if (C_GetFunctionList(&p11_2_40) != CKR_OK)
                return 1;
        /* A peer that goes away must not kill the test with SIGPIPE (the module uses MSG_NOSIGNAL itself). */
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
