/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "macro.h"

/*
 * A reader spins this long with MSG_DONTWAIT before it blocks in recv().
 * Zero: block at once. A few µs would save a futex wake-up and a context
 * switch per reply when the daemon answers from memory; measure first.
 */
#define CLIENT_SPIN_USEC 80
#define CLIENT_READ_CHUNK (64U * 1024U)

/* A thread with a call outstanding. Lives on that thread's stack; all fields under Client.lock. */
typedef struct Waiter {
        struct Waiter *prev, *next;
        uint32_t serial;
        bool done;
        int error;        /* the connection died: no payload */
        uint8_t *payload; /* the reply, handed over by the reader */
        size_t size;
        pthread_cond_t cond;
} Waiter;

typedef struct Conn {
        unsigned n_ref; /* atomic */
        int fd;
        uint64_t generation;
        uint32_t server_flags;
        /* Under Client.lock. */
        bool dead;
        bool reading; /* some waiter holds the reader role */
        uint32_t next_serial;
        Waiter *waiters;
        /* Whole frames only; never taken with Client.lock held. */
        pthread_mutex_t write_lock;
        /* Received bytes not yet cut into frames; only the reader touches them. */
        uint8_t *rbuf;
        size_t rstart, rend, ralloc;
} Conn;

struct Client {
        unsigned n_ref; /* atomic */
        pthread_mutex_t lock;
        pthread_cond_t state_cond; /* a connect attempt ended, or shutdown */
        char *path;
        Conn *conn;              /* the live connection, or NULL */
        bool shut;
        bool connecting;         /* one thread is connecting; the others wait for it */
        int connecting_fd;       /* so shutdown can cut a HELLO in progress */
        int connect_error;       /* of the last failed attempt */
        uint64_t connect_attempts;
        uint32_t server_flags;   /* from the newest HELLO */
};

/* Largest handle the application has seen, across C_Finalize and fork. */
static uint64_t handle_max;
/* Connection numbers are unique in the process, so a session recorded on one never matches another. */
static uint64_t generation_counter;

void client_note_handle(CK_ULONG handle)
{
        uint64_t h = handle, cur = __atomic_load_n(&handle_max, __ATOMIC_RELAXED);

        while (h > cur && !__atomic_compare_exchange_n(&handle_max, &cur, h, true, __ATOMIC_RELAXED,
                                                       __ATOMIC_RELAXED))
                ;
}

uint64_t client_handle_base(void)
{
        uint64_t m = __atomic_load_n(&handle_max, __ATOMIC_RELAXED);

        /* A handle of UINT64_MAX cannot be followed; the daemon then picks its own base. */
        return m == UINT64_MAX ? m : m + 1;
}

static Conn *conn_new(int fd, uint64_t generation)
{
        Conn *conn;

        conn = calloc(1, sizeof(*conn));
        if (!conn)
                return NULL;
        conn->n_ref = 1;
        conn->fd = fd;
        conn->generation = generation;
        conn->next_serial = 1; /* 0 is the HELLO's */
        pthread_mutex_init(&conn->write_lock, NULL);
        return conn;
}

static void conn_free_memory(Conn *conn)
{
        if (conn->rbuf) {
                secure_zero(conn->rbuf, conn->ralloc);
                free(conn->rbuf);
        }
        free(conn);
}

static void conn_ref(Conn *conn)
{
        __atomic_add_fetch(&conn->n_ref, 1, __ATOMIC_RELAXED);
}

static void conn_unref(Conn *conn)
{
        if (!conn || __atomic_sub_fetch(&conn->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        if (conn->fd >= 0)
                close(conn->fd);
        pthread_mutex_destroy(&conn->write_lock);
        conn_free_memory(conn);
}

static void conn_add_waiter(Conn *conn, Waiter *w)
{
        w->prev = NULL;
        w->next = conn->waiters;
        if (conn->waiters)
                conn->waiters->prev = w;
        conn->waiters = w;
}

static void conn_remove_waiter(Conn *conn, Waiter *w)
{
        if (w->prev)
                w->prev->next = w->next;
        else if (conn->waiters == w)
                conn->waiters = w->next;
        if (w->next)
                w->next->prev = w->prev;
        w->prev = w->next = NULL;
}

static Waiter *conn_find_waiter(Conn *conn, uint32_t serial)
{
        for (Waiter *w = conn->waiters; w; w = w->next)
                if (w->serial == serial && !w->done)
                        return w;
        return NULL;
}

/*
 * Ends a connection (Client.lock held): every call waiting on it returns
 * error, the daemon sees EOF, and the next call connects anew. Idempotent.
 */
static void client_kill_conn_locked(Client *c, Conn *conn, int error)
{
        if (!conn->dead) {
                conn->dead = true;
                /* Wakes a reader blocked in recv() and a writer blocked in send(). */
                (void) shutdown(conn->fd, SHUT_RDWR);
                for (Waiter *w = conn->waiters; w; w = w->next)
                        if (!w->done) {
                                w->done = true;
                                w->error = error;
                                pthread_cond_signal(&w->cond);
                        }
        }
        if (c->conn == conn) {
                c->conn = NULL;
                conn_unref(conn);
        }
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static ssize_t conn_recv(Conn *conn, void *p, size_t n, int timeout_msec)
{
        if (CLIENT_SPIN_USEC > 0 && timeout_msec < 0) {
                uint64_t deadline = monotonic_usec() + CLIENT_SPIN_USEC;

                do {
                        ssize_t k = recv(conn->fd, p, n, MSG_DONTWAIT);
                        if (k >= 0 || (errno != EAGAIN && errno != EINTR))
                                return k;
                        /* Give the CPU to whoever is runnable (the daemon, on a small machine). */
                        sched_yield();
                } while (monotonic_usec() < deadline);
        }

        if (timeout_msec >= 0) {
                struct pollfd pfd = { .fd = conn->fd, .events = POLLIN };
                int k = poll(&pfd, 1, timeout_msec);
                if (k < 0)
                        return -1;
                if (k == 0) {
                        errno = ETIMEDOUT;
                        return -1;
                }
        }
        return recv(conn->fd, p, n, 0);
}

/* Makes at least need bytes available in rbuf, reading as much as the socket has. */
static int conn_fill(Conn *conn, size_t need, int timeout_msec)
{
        while (conn->rend - conn->rstart < need) {
                ssize_t k;

                if (conn->rstart > 0) {
                        memmove(conn->rbuf, conn->rbuf + conn->rstart, conn->rend - conn->rstart);
                        conn->rend -= conn->rstart;
                        conn->rstart = 0;
                }
                if (conn->ralloc - conn->rend < CLIENT_READ_CHUNK && conn->ralloc < need + CLIENT_READ_CHUNK) {
                        size_t n = need + CLIENT_READ_CHUNK;
                        uint8_t *b = malloc(n);
                        if (!b)
                                return -ENOMEM;
                        if (conn->rbuf) {
                                memcpy(b, conn->rbuf, conn->rend);
                                secure_zero(conn->rbuf, conn->ralloc);
                                free(conn->rbuf);
                        }
                        conn->rbuf = b;
                        conn->ralloc = n;
                }

                k = conn_recv(conn, conn->rbuf + conn->rend, conn->ralloc - conn->rend, timeout_msec);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == ETIMEDOUT ? -ETIMEDOUT : -ECONNRESET;
                }
                if (k == 0)
                        return -ECONNRESET;
                conn->rend += (size_t) k;
        }
        return 0;
}

/* Reads one frame; the payload is a fresh allocation. -ECONNRESET on EOF, -EBADMSG/-EMSGSIZE for a bad header. */
static int conn_read_frame(Conn *conn, int timeout_msec, uint8_t **ret_payload, size_t *ret_size)
{
        uint8_t *payload;
        size_t len;
        int r;

        r = conn_fill(conn, KYSO_WIRE_HEADER_SIZE, timeout_msec);
        if (r < 0)
                return r;
        r = wire_frame_length(conn->rbuf + conn->rstart, &len);
        if (r < 0)
                return -EBADMSG;
        r = conn_fill(conn, KYSO_WIRE_HEADER_SIZE + len, timeout_msec);
        if (r < 0)
                return r;

        payload = malloc(len);
        if (!payload)
                return -ENOMEM;
        memcpy(payload, conn->rbuf + conn->rstart + KYSO_WIRE_HEADER_SIZE, len);
        secure_zero(conn->rbuf + conn->rstart, KYSO_WIRE_HEADER_SIZE + len);
        conn->rstart += KYSO_WIRE_HEADER_SIZE + len;
        *ret_payload = payload;
        *ret_size = len;
        return 0;
}

static void payload_free(uint8_t *payload, size_t size)
{
        /* Replies carry plaintext and key material. */
        secure_zero(payload, size);
        free(payload);
}

/* Connect + HELLO on a socket nobody else uses yet; bounded by CLIENT_HELLO_TIMEOUT_MSEC. */
static int conn_hello(Conn *conn, const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = CLIENT_HELLO_TIMEOUT_MSEC / 1000,
                              .tv_usec = (CLIENT_HELLO_TIMEOUT_MSEC % 1000) * 1000 };
        _cleanup_(buffer_done) Buffer out = {};
        CK_ULONG version = 0, flags = 0;
        uint8_t *payload = NULL;
        size_t size;
        CK_RV rv;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);

        /* Bounds connect() when the daemon's backlog is full, and sending the HELLO. */
        if (setsockopt(conn->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                return negative_errno();
        if (connect(conn->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return errno == EINPROGRESS || errno == EAGAIN ? -ETIMEDOUT : negative_errno();

        WireArg args[5] = {
                { .value = KYSO_WIRE_MAGIC },
                { .value = KYSO_WIRE_VERSION },
                { .value = (CK_ULONG) client_handle_base() },
                { .ptr = &version },
                { .ptr = &flags },
        };
        buffer_init(&out, KYSO_WIRE_FRAME_MAX + KYSO_WIRE_HEADER_SIZE);
        r = wire_encode_request(&out, 0, KYSO_CALL_HELLO, args);
        if (r < 0)
                return r;
        r = send_all(conn->fd, out.data, out.len);
        if (r < 0)
                return r == -EAGAIN ? -ETIMEDOUT : r;

        r = conn_read_frame(conn, CLIENT_HELLO_TIMEOUT_MSEC, &payload, &size);
        if (r < 0)
                return r;
        r = wire_decode_reply(payload, size, KYSO_CALL_HELLO, args, &rv);
        payload_free(payload, size);
        if (r < 0)
                return -EBADMSG;
        if (rv != CKR_OK || version != KYSO_WIRE_VERSION)
                return -EPROTO;

        conn->server_flags = (uint32_t) flags;
        /* From now on sends may block as long as the daemon needs to read them. */
        tv = (struct timeval) {};
        (void) setsockopt(conn->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        return 0;
}

/*
 * Returns the live connection with a reference, connecting if there is
 * none. Called and returns with c->lock held; drops it while connecting.
 */
static int client_get_conn_locked(Client *c, Conn **ret)
{
        uint64_t attempts_seen = c->connect_attempts;
        Conn *conn;
        int fd, r;

        for (;;) {
                if (c->shut)
                        return -ESHUTDOWN;
                if (c->conn) {
                        conn_ref(c->conn);
                        *ret = c->conn;
                        return 0;
                }
                /* Another thread tried while we waited: share its verdict rather than queue up behind it. */
                if (c->connect_attempts != attempts_seen && c->connect_error < 0)
                        return c->connect_error;
                if (!c->connecting)
                        break;
                pthread_cond_wait(&c->state_cond, &c->lock);
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        conn = conn_new(fd, __atomic_add_fetch(&generation_counter, 1, __ATOMIC_RELAXED));
        if (!conn) {
                close(fd);
                return -ENOMEM;
        }
        c->connecting = true;
        c->connecting_fd = fd;
        pthread_mutex_unlock(&c->lock);

        r = conn_hello(conn, c->path);

        pthread_mutex_lock(&c->lock);
        c->connecting = false;
        c->connecting_fd = -1;
        c->connect_attempts++;
        if (r >= 0 && c->shut)
                r = -ESHUTDOWN;
        c->connect_error = r;
        pthread_cond_broadcast(&c->state_cond);
        if (r < 0) {
                log_debug_errno(r, "Cannot connect to kysod at %s: %m", c->path);
                conn_unref(conn);
                return r;
        }

        log_debug("Connected to kysod at %s (connection %" PRIu64 ", handle base %" PRIu64 ").", c->path,
                  conn->generation, client_handle_base());
        c->server_flags = conn->server_flags;
        c->conn = conn;
        conn_ref(conn);
        *ret = conn;
        return 0;
}

int client_new(const char *path, Client **ret)
{
        Client *c;
        Conn *conn;
        pthread_condattr_t attr;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->path = strdup(path);
        if (!c->path) {
                free(c);
                return -ENOMEM;
        }
        c->n_ref = 1;
        c->connecting_fd = -1;
        pthread_mutex_init(&c->lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&c->state_cond, &attr);
        pthread_condattr_destroy(&attr);

        pthread_mutex_lock(&c->lock);
        r = client_get_conn_locked(c, &conn);
        if (r >= 0)
                conn_unref(conn);
        pthread_mutex_unlock(&c->lock);
        if (r < 0) {
                client_unref(c);
                return r;
        }

        *ret = c;
        return 0;
}

void client_ref(Client *c)
{
        __atomic_add_fetch(&c->n_ref, 1, __ATOMIC_RELAXED);
}

Client *client_unref(Client *c)
{
        if (!c || __atomic_sub_fetch(&c->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        conn_unref(c->conn);
        pthread_cond_destroy(&c->state_cond);
        pthread_mutex_destroy(&c->lock);
        free(c->path);
        free(c);
        return NULL;
}

void client_shutdown(Client *c)
{
        pthread_mutex_lock(&c->lock);
        c->shut = true;
        if (c->conn)
                client_kill_conn_locked(c, c->conn, -ESHUTDOWN);
        if (c->connecting_fd >= 0)
                (void) shutdown(c->connecting_fd, SHUT_RDWR);
        pthread_cond_broadcast(&c->state_cond);
        pthread_mutex_unlock(&c->lock);
}

void client_lock_for_fork(Client *c)
{
        if (c)
                pthread_mutex_lock(&c->lock);
}

void client_unlock_after_fork(Client *c)
{
        if (c)
                pthread_mutex_unlock(&c->lock);
}

void client_forget_after_fork(Client *c)
{
        if (!c)
                return;
        /*
         * close(), never shutdown(): the socket is shared with the parent,
         * and shutdown() would end the parent's connection. This thread
         * took c->lock before fork (client_lock_for_fork), so the state is
         * consistent and the lock ours to release; the write lock and the
         * waiters belong to threads that do not exist here, so they are
         * only forgotten, not destroyed.
         */
        pthread_mutex_unlock(&c->lock);
        if (c->conn) {
                if (c->conn->fd >= 0)
                        close(c->conn->fd);
                conn_free_memory(c->conn);
        }
        if (c->connecting_fd >= 0)
                close(c->connecting_fd);
        free(c->path);
        free(c);
}

int client_call(Client *c, WireCall call, WireArg *args, CK_RV *ret_rv, uint64_t *ret_generation)
{
        _cleanup_(buffer_done) Buffer out = {};
        Waiter w = {};
        Conn *conn;
        int r;

        buffer_init(&out, KYSO_WIRE_FRAME_MAX + KYSO_WIRE_HEADER_SIZE);
        pthread_cond_init(&w.cond, NULL);

        pthread_mutex_lock(&c->lock);
        r = client_get_conn_locked(c, &conn);
        if (r < 0) {
                pthread_mutex_unlock(&c->lock);
                pthread_cond_destroy(&w.cond);
                /* The daemon went away and is not back: to the caller that is one more removal. */
                return r == -ESHUTDOWN ? r : -ECONNRESET;
        }
        w.serial = conn->next_serial++;
        if (conn->next_serial == 0)
                conn->next_serial = 1;
        conn_add_waiter(conn, &w);
        pthread_mutex_unlock(&c->lock);

        r = wire_encode_request(&out, w.serial, call, args);
        if (r >= 0) {
                pthread_mutex_lock(&conn->write_lock);
                r = send_all(conn->fd, out.data, out.len);
                pthread_mutex_unlock(&conn->write_lock);
                /* PINs travel in requests. */
                buffer_reset(&out);
                if (r < 0) {
                        pthread_mutex_lock(&c->lock);
                        client_kill_conn_locked(c, conn, -ECONNRESET);
                        pthread_mutex_unlock(&c->lock);
                        r = 0; /* the waiter now carries the error */
                }
        }

        pthread_mutex_lock(&c->lock);
        if (r < 0) {
                /* Nothing was sent: only this call fails. */
                conn_remove_waiter(conn, &w);
                pthread_mutex_unlock(&c->lock);
                conn_unref(conn);
                pthread_cond_destroy(&w.cond);
                return r;
        }

        while (!w.done) {
                uint8_t *payload = NULL;
                size_t size = 0;
                uint32_t serial, call_id;
                Waiter *owner;

                if (conn->reading) {
                        pthread_cond_wait(&w.cond, &c->lock);
                        continue;
                }

                /* Take the reader role: read frames until our own reply comes. */
                conn->reading = true;
                pthread_mutex_unlock(&c->lock);
                r = conn_read_frame(conn, -1, &payload, &size);
                pthread_mutex_lock(&c->lock);
                conn->reading = false;

                if (r < 0) {
                        if (!conn->dead && r != -ECONNRESET)
                                log_debug_errno(r, "Bad frame from kysod, dropping the connection: %m");
                        client_kill_conn_locked(c, conn, r == -ECONNRESET || r == -ENOMEM ? -ECONNRESET : -EBADMSG);
                        break;
                }
                owner = wire_peek(payload, size, &serial, &call_id) < 0 ? NULL : conn_find_waiter(conn, serial);
                if (!owner) {
                        log_debug("Reply from kysod for no outstanding call, dropping the connection.");
                        payload_free(payload, size);
                        client_kill_conn_locked(c, conn, -EBADMSG);
                        break;
                }
                owner->payload = payload;
                owner->size = size;
                owner->done = true;
                if (owner != &w)
                        pthread_cond_signal(&owner->cond);
        }

        conn_remove_waiter(conn, &w);
        /* Pass the reader role on, or nobody would read the other replies. */
        if (!conn->reading && !conn->dead)
                for (Waiter *o = conn->waiters; o; o = o->next)
                        if (!o->done) {
                                pthread_cond_signal(&o->cond);
                                break;
                        }
        if (ret_generation)
                *ret_generation = conn->generation;
        if (c->shut && !w.payload)
                w.error = -ESHUTDOWN;
        pthread_mutex_unlock(&c->lock);
        pthread_cond_destroy(&w.cond);

        if (!w.payload) {
                conn_unref(conn);
                return w.error < 0 ? w.error : -ECONNRESET;
        }

        r = wire_decode_reply(w.payload, w.size, call, args, ret_rv);
        payload_free(w.payload, w.size);
        if (r < 0) {
                log_debug_errno(r, "Malformed reply from kysod to %s, dropping the connection: %m",
                                wire_call_info(call) ? wire_call_info(call)->name : "?");
                pthread_mutex_lock(&c->lock);
                client_kill_conn_locked(c, conn, -EBADMSG);
                pthread_mutex_unlock(&c->lock);
                r = -EBADMSG;
        }
        conn_unref(conn);
        return r;
}

uint64_t client_generation(Client *c)
{
        uint64_t g;

        pthread_mutex_lock(&c->lock);
        /* While there is no live connection, no session is valid. */
        g = c->conn ? c->conn->generation : 0;
        pthread_mutex_unlock(&c->lock);
        return g;
}

uint32_t client_server_flags(Client *c)
{
        uint32_t f;

        pthread_mutex_lock(&c->lock);
        f = c->server_flags;
        pthread_mutex_unlock(&c->lock);
        return f;
}

int client_sleep(Client *c, uint64_t usec)
{
        struct timespec ts;
        int r = 0;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t) (usec / 1000000U);
        ts.tv_nsec += (long) (usec % 1000000U) * 1000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }

        pthread_mutex_lock(&c->lock);
        while (!c->shut && r != ETIMEDOUT)
                r = pthread_cond_timedwait(&c->state_cond, &c->lock, &ts);
        r = c->shut ? -ESHUTDOWN : 0;
        pthread_mutex_unlock(&c->lock);
        return r;
}
