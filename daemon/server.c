/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "buffer.h"
#include "log.h"
#include "macro.h"
#include "server.h"
#include "wire.h"

/*
 * Reading pauses while a client has config.requests_per_client requests
 * running or config.buffered_bytes_per_client reply bytes unsent. Replies
 * of requests already running can still add up to this much before a
 * client that reads nothing is disconnected.
 */
#define CLIENT_OUT_MAX_BYTES (256U * 1024U * 1024U)

typedef enum WatchKind {
        WATCH_LISTEN,
        WATCH_QUIT,
        WATCH_CLIENT_IN,
        WATCH_CLIENT_OUT,
} WatchKind;

typedef struct Watch {
        WatchKind kind;
        Client *client;
} Watch;

/*
 * Who owns the reading side of a connection. Exactly one party does at any
 * time, and only that party may tear the connection down, so a connection
 * is never freed under a worker that epoll just woke for it.
 */
typedef enum InState {
        IN_ARMED,     /* epoll owns it: a worker will be woken */
        IN_SERVICING, /* a worker is reading from it */
        IN_PAUSED,    /* nobody reads until requests finish or replies drain */
        IN_CLOSED,
} InState;

struct Client {
        uint64_t id;
        int fd;
        int fd_out; /* a dup of fd, watched for EPOLLOUT independently of reading */
        uid_t uid;
        gid_t gid;
        pid_t pid;

        pthread_mutex_t lock;
        unsigned refs;
        bool dead;
        InState in_state;
        unsigned in_flight;

        /* Reading one frame, possibly across wake-ups; touched only by the worker that owns reading. */
        uint8_t header[KYSO_WIRE_HEADER_SIZE];
        size_t header_got;
        uint8_t *payload;
        size_t payload_len;
        size_t payload_got;

        /* Reply bytes the socket did not take yet. */
        Buffer out;
        size_t out_off;
        bool out_armed;
        bool out_registered;
        bool counted; /* in its uid's connection count */

        Watch watch_in;
        Watch watch_out;
        BrokerClient *broker;
        Client *prev, *next;
};

static int epoll_fd = -1;
static int quit_fd = -1;
static int listen_fd = -1;
static Watch watch_listen = { .kind = WATCH_LISTEN };
static Watch watch_quit = { .kind = WATCH_QUIT };

static pthread_mutex_t workers_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t *workers;
static unsigned n_workers, max_workers;
static atomic_uint idle_workers;
static atomic_bool quitting;
static ServerConfig config;
static atomic_uint spinners;
static atomic_uint n_running; /* requests being run by workers, all clients */
static unsigned spin_usec;

/*
 * What each local user holds in the daemon, across all its connections:
 * the limits are per uid, so one user cannot take from the others by
 * opening more connections. budget_lock is a leaf: nothing else is taken
 * while it is held.
 */
typedef struct UidBudget {
        uid_t uid;
        unsigned connections;
        unsigned requests;
        size_t unsent;
} UidBudget;

static pthread_mutex_t budget_lock = PTHREAD_MUTEX_INITIALIZER;
static UidBudget *budgets;
static size_t n_budgets;

static UidBudget *budget_find_locked(uid_t uid)
{
        UidBudget *n;

        for (size_t i = 0; i < n_budgets; i++)
                if (budgets[i].uid == uid)
                        return &budgets[i];
        n = realloc(budgets, (n_budgets + 1) * sizeof(UidBudget));
        if (!n)
                return NULL;
        budgets = n;
        budgets[n_budgets] = (UidBudget) { .uid = uid };
        return &budgets[n_budgets++];
}

static bool budget_open_locked(const UidBudget *b)
{
        return b->requests < config.requests_per_uid && b->unsent < config.buffered_bytes_per_uid;
}

/* Changes a uid's counts; returns whether its reading budget reopened (paused connections may resume). */
static bool budget_add(uid_t uid, int connections, int requests, ssize_t unsent)
{
        bool was_open, reopened = false;
        UidBudget *b;

        pthread_mutex_lock(&budget_lock);
        b = budget_find_locked(uid);
        if (b) {
                was_open = budget_open_locked(b);
                b->connections += connections;
                b->requests += requests;
                b->unsent = unsent < 0 && (size_t) -unsent > b->unsent ? 0 : b->unsent + unsent;
                reopened = !was_open && budget_open_locked(b);
        }
        pthread_mutex_unlock(&budget_lock);
        return reopened;
}

static bool budget_allows_read(uid_t uid)
{
        bool open;
        UidBudget *b;

        pthread_mutex_lock(&budget_lock);
        b = budget_find_locked(uid);
        open = !b || budget_open_locked(b);
        pthread_mutex_unlock(&budget_lock);
        return open;
}

static pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER;
static Client *clients;
static unsigned n_clients;
static uint64_t next_client_id = 1;

static void *worker_main(void *userdata);
static void resume_uid(uid_t uid);

static int spawn_worker_locked(void)
{
        pthread_t *n;
        int r;

        if (n_workers >= max_workers)
                return -EAGAIN;
        n = realloc(workers, (n_workers + 1) * sizeof(pthread_t));
        if (!n)
                return -ENOMEM;
        workers = n;
        r = pthread_create(&workers[n_workers], NULL, worker_main, NULL);
        if (r != 0)
                return -r;
        n_workers++;
        return 0;
}

/* Called before a worker runs a request, which may block in a backend: keep one worker free for the rest. */
static void ensure_idle_worker(void)
{
        if (atomic_load(&idle_workers) > 0)
                return;
        pthread_mutex_lock(&workers_lock);
        if (atomic_load(&idle_workers) == 0 && !atomic_load(&quitting) && spawn_worker_locked() == 0)
                log_debug("All %u workers busy; started another.", n_workers);
        pthread_mutex_unlock(&workers_lock);
}

uid_t client_uid(const Client *c)
{
        return c->uid;
}

gid_t client_gid(const Client *c)
{
        return c->gid;
}

pid_t client_pid(const Client *c)
{
        return c->pid;
}

uint64_t client_id(const Client *c)
{
        return c->id;
}

BrokerClient *client_broker(const Client *c)
{
        return c->broker;
}

unsigned server_client_count(void)
{
        unsigned n;

        pthread_mutex_lock(&clients_lock);
        n = n_clients;
        pthread_mutex_unlock(&clients_lock);
        return n;
}

void client_ref(Client *c)
{
        pthread_mutex_lock(&c->lock);
        c->refs++;
        pthread_mutex_unlock(&c->lock);
}

static void client_free(Client *c)
{
        /* Last reference: no worker runs a request for it any more, so its sessions can go. */
        broker_client_free(c->broker);
        if (budget_add(c->uid, c->counted ? -1 : 0, 0, -(ssize_t) (c->out.len - c->out_off)))
                resume_uid(c->uid);
        if (c->fd_out >= 0) {
                if (c->out_registered)
                        (void) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd_out, NULL);
                close(c->fd_out);
        }
        if (c->fd >= 0)
                close(c->fd);
        secure_zero(c->payload, c->payload_len);
        free(c->payload);
        buffer_done(&c->out);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

void client_unref(Client *c)
{
        bool last;

        pthread_mutex_lock(&c->lock);
        last = --c->refs == 0;
        pthread_mutex_unlock(&c->lock);
        if (last)
                client_free(c);
}

static bool can_read_locked(const Client *c)
{
        return !c->dead && c->in_flight < config.requests_per_client &&
               c->out.len - c->out_off < config.buffered_bytes_per_client && budget_allows_read(c->uid);
}

static int arm_in_locked(Client *c);

/* The uid's budget reopened: its connections paused for it may read again. */
static void resume_uid(uid_t uid)
{
        pthread_mutex_lock(&clients_lock);
        for (Client *c = clients; c; c = c->next) {
                if (c->uid != uid)
                        continue;
                pthread_mutex_lock(&c->lock);
                if (c->in_state == IN_PAUSED && can_read_locked(c))
                        (void) arm_in_locked(c);
                pthread_mutex_unlock(&c->lock);
        }
        pthread_mutex_unlock(&clients_lock);
}

static int arm_in_locked(Client *c)
{
        struct epoll_event ev = {
                .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                .data.ptr = &c->watch_in,
        };

        c->in_state = IN_ARMED;
        if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                return -errno;
        return 0;
}

/* Ends a connection whose reading side the caller owns (it just set IN_CLOSED). */
static void client_teardown(Client *c)
{
        (void) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
        (void) shutdown(c->fd, SHUT_RDWR);
        broker_client_disconnect(c->broker);

        pthread_mutex_lock(&clients_lock);
        if (c->prev)
                c->prev->next = c->next;
        else
                clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        n_clients--;
        pthread_mutex_unlock(&clients_lock);

        log_debug("Client %" PRIu64 " (pid %d, uid %u) disconnected.", c->id, (int) c->pid, (unsigned) c->uid);
        client_unref(c); /* the reference the reading side held */
}

void client_kill(Client *c)
{
        bool teardown = false;

        pthread_mutex_lock(&c->lock);
        if (!c->dead) {
                c->dead = true;
                if (c->in_state == IN_PAUSED) {
                        /* Nobody else owns reading now: we do, and we end it. */
                        c->in_state = IN_CLOSED;
                        teardown = true;
                } else
                        /* Wakes the armed watch, or the servicing worker notices "dead". */
                        (void) shutdown(c->fd, SHUT_RDWR);
        }
        pthread_mutex_unlock(&c->lock);
        if (teardown)
                client_teardown(c);
}

/* Writes what the socket takes now. Returns 0, or -errno if the connection is broken. */
static int flush_locked(Client *c)
{
        while (c->out_off < c->out.len) {
                ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                c->out_off += (size_t) n;
        }
        buffer_reset(&c->out);
        c->out_off = 0;
        return 0;
}

static void arm_out_locked(Client *c)
{
        struct epoll_event ev = {
                .events = EPOLLOUT | EPOLLONESHOT,
                .data.ptr = &c->watch_out,
        };

        if (c->out_armed)
                return;
        /* Registered only when first needed: epoll reports a hang-up even on a watch asking for no
         * events, and a watch that fires must own a reference. */
        if (epoll_ctl(epoll_fd, c->out_registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd_out, &ev) < 0) {
                log_warning_errno(errno, "Failed to watch client %" PRIu64 " for writing: %m", c->id);
                return;
        }
        c->out_registered = true;
        c->out_armed = true;
        c->refs++; /* held by the armed watch */
}

void client_send(Client *c, const uint8_t *data, size_t len)
{
        bool kill = false;
        size_t before = 0;

        pthread_mutex_lock(&c->lock);
        if (c->dead)
                goto out;
        before = c->out.len - c->out_off;
        if (before + len > CLIENT_OUT_MAX_BYTES) {
                log_warning("Client %" PRIu64 " (pid %d) does not read its replies; disconnecting.", c->id,
                            (int) c->pid);
                kill = true;
                goto out;
        }
        buffer_add_bytes(&c->out, data, len);
        if (!buffer_ok(&c->out)) {
                log_oom();
                kill = true;
                goto out;
        }
        if (flush_locked(c) < 0)
                kill = true;
        else if (c->out_off < c->out.len)
                arm_out_locked(c);
        (void) budget_add(c->uid, 0, 0, (ssize_t) (c->out.len - c->out_off) - (ssize_t) before);
out:
        pthread_mutex_unlock(&c->lock);
        if (kill)
                client_kill(c);
}

static void handle_out(Client *c)
{
        bool kill = false, reopened;
        size_t before;

        pthread_mutex_lock(&c->lock);
        c->out_armed = false;
        before = c->out.len - c->out_off;
        if (!c->dead) {
                if (flush_locked(c) < 0)
                        kill = true;
                else if (c->out_off < c->out.len)
                        arm_out_locked(c);
                else if (c->in_state == IN_PAUSED && can_read_locked(c))
                        (void) arm_in_locked(c);
        }
        c->refs--; /* the watch's reference; the caller holds another */
        reopened = budget_add(c->uid, 0, 0, (ssize_t) (c->out.len - c->out_off) - (ssize_t) before);
        pthread_mutex_unlock(&c->lock);
        if (kill)
                client_kill(c);
        if (reopened)
                resume_uid(c->uid);
}

/* One local user may not take the daemon's connections from everyone else. */
static bool uid_at_limit(uid_t uid)
{
        static uint64_t last_logged;
        unsigned n = 0;
        uint64_t now;
        UidBudget *b;

        pthread_mutex_lock(&budget_lock);
        b = budget_find_locked(uid);
        if (b)
                n = b->connections;
        pthread_mutex_unlock(&budget_lock);
        if (n < config.connections_per_uid)
                return false;

        /* At most one line a second, however hard someone knocks. */
        now = monotonic_usec();
        if (now - last_logged >= 1000000U) {
                last_logged = now;
                log_warning("Refusing a connection of uid %u: it already has %u connections (limit %u).",
                            (unsigned) uid, n, config.connections_per_uid);
        }
        return true;
}

static void accept_clients(void)
{
        struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = &watch_listen };

        for (unsigned i = 0; i < 64; i++) {
                struct ucred cred;
                socklen_t cred_len = sizeof(cred);
                struct epoll_event cev;
                Client *c;
                int fd, r;

                fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                log_warning_errno(errno, "Failed to accept a connection: %m");
                        break;
                }
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) < 0) {
                        log_warning_errno(errno, "Failed to learn who connected: %m");
                        close(fd);
                        continue;
                }

                if (uid_at_limit(cred.uid)) {
                        close(fd);
                        continue;
                }

                c = calloc(1, sizeof(Client));
                if (!c) {
                        log_oom();
                        close(fd);
                        continue;
                }
                c->fd = fd;
                c->fd_out = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                c->uid = cred.uid;
                c->gid = cred.gid;
                c->pid = cred.pid;
                c->refs = 1; /* the reading side's */
                c->watch_in = (Watch) { .kind = WATCH_CLIENT_IN, .client = c };
                c->watch_out = (Watch) { .kind = WATCH_CLIENT_OUT, .client = c };
                pthread_mutex_init(&c->lock, NULL);
                buffer_init(&c->out, CLIENT_OUT_MAX_BYTES + KYSO_WIRE_FRAME_MAX);

                pthread_mutex_lock(&clients_lock);
                c->id = next_client_id++;
                pthread_mutex_unlock(&clients_lock);

                r = c->fd_out < 0 ? -errno : broker_client_new(c, &c->broker);
                if (r < 0) {
                        log_warning_errno(r, "Failed to set up a client: %m");
                        c->fd_out = c->fd_out < 0 ? -1 : c->fd_out;
                        client_free(c);
                        continue;
                }

                (void) budget_add(c->uid, 1, 0, 0);
                c->counted = true;

                pthread_mutex_lock(&clients_lock);
                c->next = clients;
                if (clients)
                        clients->prev = c;
                clients = c;
                n_clients++;
                pthread_mutex_unlock(&clients_lock);

                log_debug("Client %" PRIu64 " connected: pid %d, uid %u, gid %u.", c->id, (int) c->pid,
                          (unsigned) c->uid, (unsigned) c->gid);

                c->in_state = IN_ARMED;
                cev = (struct epoll_event) {
                        .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                        .data.ptr = &c->watch_in,
                };
                if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &cev) < 0) {
                        log_warning_errno(errno, "Failed to watch a client: %m");
                        pthread_mutex_lock(&c->lock);
                        c->dead = true;
                        c->in_state = IN_CLOSED;
                        pthread_mutex_unlock(&c->lock);
                        client_teardown(c);
                }
        }

        if (!atomic_load(&quitting))
                (void) epoll_ctl(epoll_fd, EPOLL_CTL_MOD, listen_fd, &ev);
}

/*
 * Reads toward one complete frame without blocking. Returns 1 with the
 * payload moved to *ret when a frame is complete, 0 if more bytes are
 * needed, or -errno (-ECONNRESET for end of file, -EMSGSIZE/-EBADMSG for a
 * bad header).
 */
static int read_frame(Client *c, uint8_t **ret, size_t *ret_len)
{
        for (;;) {
                uint8_t *dst;
                size_t want;
                ssize_t n;
                int r;

                if (c->header_got < KYSO_WIRE_HEADER_SIZE) {
                        dst = c->header + c->header_got;
                        want = KYSO_WIRE_HEADER_SIZE - c->header_got;
                } else {
                        dst = c->payload + c->payload_got;
                        want = c->payload_len - c->payload_got;
                }

                n = recv(c->fd, dst, want, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;

                if (c->header_got < KYSO_WIRE_HEADER_SIZE) {
                        c->header_got += (size_t) n;
                        if (c->header_got < KYSO_WIRE_HEADER_SIZE)
                                continue;
                        /* The size is checked before anything is allocated for it. */
                        r = wire_frame_length(c->header, &c->payload_len);
                        if (r < 0)
                                return r;
                        c->payload = malloc(c->payload_len);
                        if (!c->payload)
                                return -ENOMEM;
                        c->payload_got = 0;
                        continue;
                }

                c->payload_got += (size_t) n;
                if (c->payload_got == c->payload_len) {
                        *ret = TAKE_PTR(c->payload);
                        *ret_len = c->payload_len;
                        c->header_got = 0;
                        c->payload_len = c->payload_got = 0;
                        return 1;
                }
        }
}

/*
 * Requests running in a worker, so the watchdog can answer one whose
 * backend call does not return (a hung token). The backend call itself
 * cannot be interrupted: it goes on, and its late reply is dropped.
 */
static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct Running {
        Client *client;
        uint32_t serial;
        uint32_t call;
        uint64_t started;
        bool answered;
        unsigned long slot_id; /* 0 until the broker names the token */
        char label[33];
        struct Running *prev, *next;
} Running;

static __thread Running *current_request;

void server_note_token(unsigned long slot_id, const char *label)
{
        Running *r = current_request;

        if (!r)
                return;
        pthread_mutex_lock(&running_lock);
        r->slot_id = slot_id;
        snprintf(r->label, sizeof(r->label), "%s", label ? label : "");
        pthread_mutex_unlock(&running_lock);
}

static Running *running_list;
static pthread_t watchdog_thread;
static bool watchdog_started, watchdog_stop;
static pthread_cond_t watchdog_cond = PTHREAD_COND_INITIALIZER;

static void running_add(Running *r)
{
        pthread_mutex_lock(&running_lock);
        r->next = running_list;
        if (running_list)
                running_list->prev = r;
        running_list = r;
        pthread_mutex_unlock(&running_lock);
}

/* Returns whether the watchdog answered the request already. */
static bool running_remove(Running *r)
{
        bool answered;

        pthread_mutex_lock(&running_lock);
        if (r->prev)
                r->prev->next = r->next;
        else
                running_list = r->next;
        if (r->next)
                r->next->prev = r->prev;
        answered = r->answered;
        pthread_mutex_unlock(&running_lock);
        return answered;
}

static void answer_overdue(void)
{
        struct {
                Client *client;
                uint32_t serial, call;
                unsigned long slot_id;
                char label[33];
        } due[32];
        uint64_t now = monotonic_usec(), limit = (uint64_t) config.call_timeout_ms * 1000U;
        size_t n = 0;

        pthread_mutex_lock(&running_lock);
        for (Running *r = running_list; r && n < ELEMENTSOF(due); r = r->next)
                if (!r->answered && now - r->started > limit) {
                        r->answered = true;
                        client_ref(r->client);
                        due[n].client = r->client;
                        due[n].serial = r->serial;
                        due[n].call = r->call;
                        due[n].slot_id = r->slot_id;
                        memcpy(due[n].label, r->label, sizeof(due[n].label));
                        n++;
                }
        pthread_mutex_unlock(&running_lock);

        for (size_t i = 0; i < n; i++) {
                const WireCallInfo *info = wire_call_info((WireCall) due[i].call);
                Buffer reply;

                char where[80] = "";

                if (due[i].slot_id > 0)
                        snprintf(where, sizeof(where), " on slot %lu (%s)", due[i].slot_id, due[i].label);
                log_error("%s%s for client %" PRIu64 " (pid %d, uid %u) did not return within %u ms: the backend or "
                          "its token hangs. Answered CKR_DEVICE_ERROR; the call goes on in the backend.",
                          info ? info->name : "A call", where, due[i].client->id, (int) due[i].client->pid,
                          (unsigned) due[i].client->uid, config.call_timeout_ms);
                buffer_init(&reply, 64);
                if (wire_encode_error_reply(&reply, due[i].serial, (WireCall) due[i].call, CKR_DEVICE_ERROR) == 0)
                        client_send(due[i].client, reply.data, reply.len);
                buffer_done(&reply);
                client_unref(due[i].client);
        }
}

static void *watchdog_main(void *userdata)
{
        pthread_mutex_lock(&running_lock);
        while (!watchdog_stop) {
                struct timespec ts = realtime_after_usec(200U * 1000U);

                (void) pthread_cond_timedwait(&watchdog_cond, &running_lock, &ts);
                if (watchdog_stop)
                        break;
                pthread_mutex_unlock(&running_lock);
                answer_overdue();
                pthread_mutex_lock(&running_lock);
        }
        pthread_mutex_unlock(&running_lock);
        return NULL;
}

static void run_request(Client *c, uint8_t *payload, size_t len)
{
        Running running = { .client = c };
        bool tracked = false, late = false;
        Buffer reply;
        int r;

        if (config.call_timeout_ms > 0 && wire_peek(payload, len, &running.serial, &running.call) == 0) {
                running.started = monotonic_usec();
                running_add(&running);
                tracked = true;
                current_request = &running;
        }

        buffer_init(&reply, KYSO_WIRE_FRAME_MAX + KYSO_WIRE_HEADER_SIZE);
        r = broker_handle(c->broker, payload, len, &reply);
        secure_zero(payload, len); /* may have carried a PIN */
        free(payload);

        current_request = NULL;
        if (tracked && running_remove(&running)) {
                const WireCallInfo *info = wire_call_info((WireCall) running.call);

                log_warning("%s for client %" PRIu64 " returned after all, %" PRIu64 " ms late; its answer was "
                            "already sent, dropping this one.",
                            info ? info->name : "A call", c->id,
                            (monotonic_usec() - running.started) / 1000U - config.call_timeout_ms);
                late = true;
        }
        if (late) {
                buffer_done(&reply);
                return;
        }

        if (r < 0) {
                /* One line per offending connection; the others carry on. */
                log_warning_errno(r, "Client %" PRIu64 " (pid %d, uid %u) sent a bad request, disconnecting: %m",
                                  c->id, (int) c->pid, (unsigned) c->uid);
                client_kill(c);
        } else if (reply.len > 0)
                client_send(c, reply.data, reply.len);
        buffer_done(&reply);
}

/* How long requests take to run, on average over the last few (an exponential moving average, 1/8). */
static atomic_uint_fast64_t run_usec_avg;

static void note_run_time(uint64_t usec)
{
        uint64_t avg = atomic_load(&run_usec_avg);

        /* Racing updates may lose one another's sample: it is an estimate. */
        atomic_store(&run_usec_avg, avg - avg / 8 + usec / 8);
}

static void handle_in(Client *c)
{
        uint64_t started;
        uint8_t *payload = NULL;
        size_t len = 0;
        bool teardown = false, reopened;
        int r;

        pthread_mutex_lock(&c->lock);
        c->in_state = IN_SERVICING;
        pthread_mutex_unlock(&c->lock);

        r = read_frame(c, &payload, &len);
        if (r < 0 && r != -ECONNRESET)
                log_warning_errno(r, "Client %" PRIu64 " (pid %d, uid %u) broke the connection, disconnecting: %s",
                                  c->id, (int) c->pid, (unsigned) c->uid,
                                  r == -EMSGSIZE ? "frame over the size limit" : strerror(-r));

        pthread_mutex_lock(&c->lock);
        if (r < 0 || c->dead) {
                c->dead = true;
                c->in_state = IN_CLOSED;
                teardown = true;
        } else {
                if (r > 0) {
                        c->in_flight++;
                        c->refs++; /* held by the request */
                        (void) budget_add(c->uid, 0, 1, 0);
                }
                if (can_read_locked(c))
                        (void) arm_in_locked(c);
                else
                        c->in_state = IN_PAUSED;
        }
        pthread_mutex_unlock(&c->lock);

        if (teardown) {
                free(payload);
                client_teardown(c);
                return;
        }
        if (r == 0)
                return;

        ensure_idle_worker();
        atomic_fetch_add(&n_running, 1);
        started = monotonic_usec();
        run_request(c, payload, len);
        note_run_time(monotonic_usec() - started);
        atomic_fetch_sub(&n_running, 1);

        reopened = budget_add(c->uid, 0, -1, 0);
        pthread_mutex_lock(&c->lock);
        c->in_flight--;
        if (c->in_state == IN_PAUSED && can_read_locked(c))
                (void) arm_in_locked(c);
        pthread_mutex_unlock(&c->lock);
        if (reopened)
                resume_uid(c->uid);
        client_unref(c);
}

/*
 * Who waits at the epoll set. Every thread blocked in epoll_wait() is woken
 * for every event, whoever takes it, and on a small machine that wake-up (a
 * context switch on the CPU the client runs on) cost more than the rest of a
 * round trip. So while one client at a time sends requests, one worker at a
 * time (the poller) waits there and the others wait on post_cond.
 *
 * The poller that takes an event leaves its post and runs the request. A
 * follower takes the post at once when more events are waiting already, or
 * when no follower is on watch; otherwise the follower on watch (one at a
 * time, waking every WATCH_USEC while kysod is busy) takes it once it has
 * been empty that long and an event waits. So one client's requests (Sign
 * after SignInit, however long each runs) run on one thread, with the
 * backend's data still in that CPU's cache and nobody woken, and a request
 * that comes while that thread is in a long call waits at most about
 * WATCH_USEC for another.
 *
 * Requests that overlap (several clients, or several threads of one, at
 * once) and take a while to run (OVERLAP_RUN_USEC on average) need workers
 * side by side: for OVERLAP_USEC after a request was taken while another ran,
 * every idle worker waits at the epoll set.
 */
#define WATCH_USEC 1000U
#define WATCH_FOR_USEC (100U * 1000U) /* a manned post is watched this long after its last event */
#define OVERLAP_USEC (10U * 1000U)
#define OVERLAP_RUN_USEC 20U

static pthread_mutex_t post_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t post_cond = PTHREAD_COND_INITIALIZER;
static unsigned pollers;
static bool on_watch;
static uint64_t post_left_usec;    /* when a poller last took an event */
static uint64_t overlap_until_usec; /* see above */

/* Whether events are ready in the epoll set, without taking any: an epoll set polls readable then. */
static bool events_ready(void)
{
        struct pollfd p = { .fd = epoll_fd, .events = POLLIN };

        return poll(&p, 1, 0) > 0;
}

/* Waits until this worker may wait for events; false when kysod is stopping. */
static bool take_post(void)
{
        bool ok, watched = false;

        pthread_mutex_lock(&post_lock);
        for (;;) {
                uint64_t now = monotonic_usec(), vacant = now - post_left_usec;

                if (atomic_load(&quitting))
                        break;
                if (now < overlap_until_usec)
                        break;
                /* A worker back from a request or called takes an empty post at once. The one on watch takes
                 * it once it has been empty for WATCH_USEC and an event waits (the request may end any moment,
                 * and that client's next one is best taken by the same thread), or has been empty for
                 * WATCH_FOR_USEC (a call that hangs: then it waits in epoll_wait(), not by the clock). */
                if (pollers == 0 &&
                    (!watched || (vacant >= WATCH_USEC && events_ready()) || vacant >= WATCH_FOR_USEC))
                        break;
                /* While the post is empty someone watches it; while it is manned, only until kysod is idle. */
                if ((pollers == 0 || vacant < WATCH_FOR_USEC) && (watched || !on_watch)) {
                        uint64_t wait = pollers > 0 || vacant >= WATCH_USEC ? WATCH_USEC : WATCH_USEC - vacant;
                        struct timespec until = realtime_after_usec(wait);

                        on_watch = true;
                        watched = pthread_cond_timedwait(&post_cond, &post_lock, &until) == ETIMEDOUT;
                        on_watch = false;
                } else {
                        watched = false;
                        pthread_cond_wait(&post_cond, &post_lock);
                }
        }
        ok = !atomic_load(&quitting);
        if (ok)
                pollers++;
        pthread_mutex_unlock(&post_lock);
        return ok;
}

/* A poller took an event: see above for who waits next. */
static void leave_post(void)
{
        bool overlap = atomic_load(&n_running) > 0 && atomic_load(&run_usec_avg) >= OVERLAP_RUN_USEC;
        bool more = !overlap && events_ready(); /* a system call: only when the answer is used */
        uint64_t now = monotonic_usec();

        pthread_mutex_lock(&post_lock);
        pollers--;
        post_left_usec = now;
        if (overlap) {
                /* Another request is running: requests overlap, and take long enough to need workers side by
                 * side. Shorter ones are served faster by one thread in turn than by threads woken for each. */
                bool was_overlapping = now < overlap_until_usec;

                overlap_until_usec = now + OVERLAP_USEC;
                if (!was_overlapping)
                        pthread_cond_broadcast(&post_cond);
        } else if (pollers == 0 && (more || !on_watch))
                pthread_cond_signal(&post_cond);
        pthread_mutex_unlock(&post_lock);
}

/*
 * A poller's wait for the next event. One poller at a time first polls for
 * spin_usec: a client's next request usually comes within tens of
 * microseconds, and a thread asleep in epoll_wait() takes 25-30 µs to wake on
 * this kind of machine. Never while a worker runs a request: on a small
 * machine the polling would take the CPU that request needs.
 */
static int wait_event(struct epoll_event *ev)
{
        int n = 0;

        if (spin_usec > 0 && atomic_fetch_add(&spinners, 1) == 0) {
                uint64_t deadline = monotonic_usec() + spin_usec;

                do
                        n = epoll_wait(epoll_fd, ev, 1, 0);
                while (n == 0 && atomic_load(&n_running) == 0 && monotonic_usec() < deadline);
                atomic_fetch_sub(&spinners, 1);
                if (n != 0)
                        return n;
        } else if (spin_usec > 0)
                atomic_fetch_sub(&spinners, 1);
        return epoll_wait(epoll_fd, ev, 1, -1);
}

static void *worker_main(void *userdata)
{
        for (;;) {
                struct epoll_event ev;
                Watch *w;
                int n, r;

                atomic_fetch_add(&idle_workers, 1);
                if (!take_post()) {
                        atomic_fetch_sub(&idle_workers, 1);
                        return NULL;
                }
                do
                        n = wait_event(&ev);
                while (n == 0 || (n < 0 && errno == EINTR));
                r = n < 0 ? -errno : 0;
                leave_post();
                atomic_fetch_sub(&idle_workers, 1);
                if (r < 0) {
                        log_error_errno(r, "epoll_wait failed: %m");
                        break;
                }

                w = ev.data.ptr;
                switch (w->kind) {
                case WATCH_QUIT:
                        return NULL;
                case WATCH_LISTEN:
                        accept_clients();
                        break;
                case WATCH_CLIENT_IN:
                        handle_in(w->client);
                        break;
                case WATCH_CLIENT_OUT:
                        client_ref(w->client);
                        handle_out(w->client);
                        client_unref(w->client);
                        break;
                }
        }
        return NULL;
}

int server_start(const ServerConfig *c)
{
        struct epoll_event ev;
        int r;

        config = *c;
        if (config.requests_per_client == 0)
                config.requests_per_client = 64;
        if (config.buffered_bytes_per_client == 0)
                config.buffered_bytes_per_client = 4U * 1024U * 1024U;
        if (config.connections_per_uid == 0)
                config.connections_per_uid = 64;
        if (config.requests_per_uid == 0)
                config.requests_per_uid = 128;
        if (config.buffered_bytes_per_uid == 0)
                config.buffered_bytes_per_uid = 64U * 1024U * 1024U;
        listen_fd = c->listen_fd;
        spin_usec = c->spin_usec;
        max_workers = c->max_workers > 0 ? c->max_workers : 64;

        epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd < 0)
                return log_error_errno(errno, "Failed to create epoll instance: %m");
        quit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (quit_fd < 0)
                return log_error_errno(errno, "Failed to create eventfd: %m");

        /* Level-triggered and never read: once written, it wakes every worker so all of them exit. */
        ev = (struct epoll_event) { .events = EPOLLIN, .data.ptr = &watch_quit };
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, quit_fd, &ev) < 0)
                return log_error_errno(errno, "Failed to watch eventfd: %m");
        ev = (struct epoll_event) { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = &watch_listen };
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
                return log_error_errno(errno, "Failed to watch the listening socket: %m");

        if (config.call_timeout_ms > 0 && pthread_create(&watchdog_thread, NULL, watchdog_main, NULL) == 0)
                watchdog_started = true;

        pthread_mutex_lock(&workers_lock);
        for (unsigned i = 0; i < (c->workers > 0 ? c->workers : 4); i++) {
                r = spawn_worker_locked();
                if (r < 0) {
                        pthread_mutex_unlock(&workers_lock);
                        return log_error_errno(r, "Failed to start worker thread: %m");
                }
        }
        pthread_mutex_unlock(&workers_lock);
        return 0;
}

unsigned server_stop(uint64_t timeout_usec)
{
        uint64_t one = 1;
        struct timespec deadline;
        unsigned stuck = 0;

        if (epoll_fd < 0)
                return 0;

        atomic_store(&quitting, true);
        pthread_mutex_lock(&post_lock);
        pthread_cond_broadcast(&post_cond); /* followers leave; pollers see quit_fd */
        pthread_mutex_unlock(&post_lock);
        (void) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, NULL);

        /* Clients see the connection end and turn it into PKCS#11 errors. */
        pthread_mutex_lock(&clients_lock);
        for (Client *c = clients; c; c = c->next)
                (void) shutdown(c->fd, SHUT_RDWR);
        pthread_mutex_unlock(&clients_lock);

        if (write(quit_fd, &one, sizeof(one)) < 0)
                log_warning_errno(errno, "Failed to wake the workers: %m");

        deadline = realtime_after_usec(timeout_usec);

        pthread_mutex_lock(&workers_lock);
        for (unsigned i = 0; i < n_workers; i++)
                /* A worker stuck in a backend call cannot be interrupted; leave it to the exit. */
                if (pthread_timedjoin_np(workers[i], NULL, &deadline) != 0)
                        stuck++;
        pthread_mutex_unlock(&workers_lock);
        if (stuck > 0)
                log_warning("%u worker(s) still inside a backend call at shutdown.", stuck);

        if (watchdog_started) {
                pthread_mutex_lock(&running_lock);
                watchdog_stop = true;
                pthread_cond_broadcast(&watchdog_cond);
                pthread_mutex_unlock(&running_lock);
                pthread_join(watchdog_thread, NULL);
                watchdog_started = false;
        }
        return stuck;
}
