/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kyso-bench: latency and throughput of common PKCS#11 calls, measured in one
 * run (a) directly against SoftHSM2, (b) through kyso, (c) through p11-kit's
 * remoting (p11-kit server + p11-kit-client.so), with 1 and 4 client
 * processes. Prints ops/s, p50/p99 latency and the ratios the project's
 * targets are stated in. Not a pass/fail test: it exits non-zero only when an
 * operation fails.
 *
 * Targets (modules) come from the environment: SOFTHSM_MODULE (direct, and threads),
 * KYSO_MODULE (with KYSO_SOCKET), P11KIT_CLIENT_MODULE (with
 * P11_KIT_SERVER_ADDRESS); a target whose variable is unset is skipped. The
 * token is found by KYSO_TEST_LABEL and logged in with KYSO_TEST_PIN.
 *
 * Each client process initialises the module, logs in and makes its own
 * session keys once; the processes start one after another (SoftHSM2 can lose
 * a token when several processes C_Initialize the same store at once), then
 * run each operation together on a signal from the parent and send back a
 * latency histogram. The clients of all three targets are set up first; each
 * row's duration is then split into rounds (--rounds, default 4) that visit
 * the targets in turn, starting with a different one each round, so that a
 * machine getting faster or slower during the run (other guests, frequency)
 * weighs on every target alike and the ratios compare like with like. The
 * target lines give each ratio's lowest and highest value over the rounds too.
 *
 * With several clients a fourth row, "threads", is a reference with no target:
 * SoftHSM2 loaded once in one process whose threads are the clients, each with
 * its own session. That is what kysod's backend sees: one module instance that
 * owns the token and serves everyone, where the "direct" row gives each client
 * process its own (as p11-kit's server does too: it starts a p11-kit-remote
 * process, which loads the module anew, for each connection).
 *
 * The run ends with how long a bare reply between two processes takes to reach
 * its waiter, blocked or polling, for a reply at once and after 1.5 ms of work
 * (an RSA-2048 signature here): on a virtual machine whose idle vCPUs halt, a
 * client blocked through a long call wakes tens of µs late.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p11-test.h"

#define MAX_PROCS 16
#define N_BUCKETS 1400
#define BUCKET_BASE 1.02 /* 2% latency resolution */

typedef enum {
        OP_SESSION_INFO,
        OP_FIND,
        OP_RANDOM,
        OP_DIGEST,
        OP_SIGN_RSA,
        OP_SIGN_ECDSA,
        OP_SIGN_1M,
        _OP_MAX,
} Op;

static const char *const op_names[_OP_MAX] = {
        [OP_SESSION_INFO] = "C_GetSessionInfo",
        [OP_FIND] = "find by label (Init/Find/Final)",
        [OP_RANDOM] = "C_GenerateRandom(32)",
        [OP_DIGEST] = "C_Digest(SHA-256, 1 KiB)",
        [OP_SIGN_RSA] = "C_Sign(SHA256-RSA-PKCS, RSA-2048)",
        [OP_SIGN_ECDSA] = "C_Sign(ECDSA, P-256)",
        [OP_SIGN_1M] = "C_Sign(SHA256-RSA-PKCS, 1 MiB)",
};

typedef struct Target {
        const char *name;
        const char *module;
        bool threads; /* the clients are threads of one process, not processes */
} Target;

enum { T_DIRECT, T_KYSO, T_P11KIT, T_THREADS, _T_MAX };

typedef struct Result {
        uint64_t ops;
        double seconds;
        CK_RV error;
        uint64_t hist[N_BUCKETS];
} Result;

/* What the parent tells a client: run op for this long, then report. */
typedef struct Go {
        unsigned char op;
        double seconds;
} Go;

/* One target's client processes. */
typedef struct ClientSet {
        int n;
        pid_t pids[MAX_PROCS];
        int go[MAX_PROCS], res[MAX_PROCS];
} ClientSet;

/* A row's results summed over its rounds. */
typedef struct Acc {
        uint64_t hist[N_BUCKETS];
        uint64_t ops[MAX_PROCS];
        double seconds[MAX_PROCS];
        CK_RV error;
} Acc;

#define ROUNDS_KEPT 64 /* rounds whose throughput is kept for the spread of the ratios */

typedef struct Row {
        bool done;
        double ops_per_s, p50_us, p99_us;
        double round_ops_per_s[ROUNDS_KEPT];
        CK_RV error;
} Row;

static double duration = 2.0;
static int rounds = 4;
static const char *label, *pin;
static Row rows[_T_MAX][2][_OP_MAX]; /* target, procs index, op */
static const int proc_counts[2] = { 1, 4 };

/* ---- the client process ---- */

typedef struct Client {
        const char *name;
        CK_FUNCTION_LIST_PTR f;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE rsa, ec;
        CK_BYTE *big;
        CK_ULONG objects_seen; /* how many find-by-label objects its process made */
        bool warned;
} Client;

static const char find_label[] = "kyso-bench-find";

/* A client's session and keys, in a module the process loaded and initialised already. */
static CK_RV client_setup(Client *c, const char *name, CK_FUNCTION_LIST_PTR f, CK_SLOT_ID slot) {
        CK_OBJECT_HANDLE pub, h;
        CK_RV rv;

        c->name = name;
        c->f = f;
        if ((rv = p11t_open_login(c->f, slot, pin, &c->s)) != CKR_OK ||
            (rv = p11t_gen_rsa(c->f, c->s, 2048, "kyso-bench-rsa", false, &pub, &c->rsa)) != CKR_OK ||
            (rv = p11t_gen_ec(c->f, c->s, "P-256", "kyso-bench-ec", false, &pub, &c->ec)) != CKR_OK)
                return rv;
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE dt[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_TOKEN, &no, sizeof(no) },
                              { CKA_LABEL, (void *) find_label, sizeof(find_label) - 1 },
                              { CKA_VALUE, (void *) "x", 1 } };
        if ((rv = c->f->C_CreateObject(c->s, dt, ELEMENTSOF(dt), &h)) != CKR_OK)
                return rv;
        c->big = malloc(1 << 20);
        if (!c->big)
                return CKR_HOST_MEMORY;
        for (size_t i = 0; i < (1 << 20); i++)
                c->big[i] = (CK_BYTE) (i * 13);
        return CKR_OK;
}

static CK_RV run_op(Client *c, Op op) {
        CK_FUNCTION_LIST_PTR f = c->f;
        CK_BYTE out[512], data[1024];
        CK_ULONG n = sizeof(out);
        CK_RV rv;

        memset(data, 0x42, sizeof(data));
        switch (op) {
        case OP_SESSION_INFO: {
                CK_SESSION_INFO si;
                return f->C_GetSessionInfo(c->s, &si);
        }
        case OP_FIND: {
                CK_ATTRIBUTE t[] = { { CKA_LABEL, (void *) find_label, sizeof(find_label) - 1 } };
                CK_OBJECT_HANDLE h[MAX_PROCS + 1];
                rv = p11t_find(f, c->s, t, 1, h, ELEMENTSOF(h), &n);
                /* Each client made one object with this label, and sees those of its own process (the threads
                 * target's clients share one); more would mean it sees other processes' session objects, which
                 * kyso must not allow (reported by the integration tests, not here). */
                if (rv == CKR_OK && n != c->objects_seen) {
                        if (!c->warned)
                                fprintf(stderr, "kyso-bench: %s: find by label found %lu objects, expected %lu\n",
                                        c->name, (unsigned long) n, (unsigned long) c->objects_seen);
                        c->warned = true;
                        if (n < 1)
                                rv = CKR_GENERAL_ERROR;
                }
                return rv;
        }
        case OP_RANDOM:
                return f->C_GenerateRandom(c->s, out, 32);
        case OP_DIGEST:
                if ((rv = f->C_DigestInit(c->s, &(CK_MECHANISM) { CKM_SHA256, NULL, 0 })) != CKR_OK)
                        return rv;
                return f->C_Digest(c->s, data, 1024, out, &n);
        case OP_SIGN_RSA:
                if ((rv = f->C_SignInit(c->s, &(CK_MECHANISM) { CKM_SHA256_RSA_PKCS, NULL, 0 }, c->rsa)) != CKR_OK)
                        return rv;
                return f->C_Sign(c->s, data, 64, out, &n);
        case OP_SIGN_ECDSA:
                if ((rv = f->C_SignInit(c->s, &(CK_MECHANISM) { CKM_ECDSA, NULL, 0 }, c->ec)) != CKR_OK)
                        return rv;
                return f->C_Sign(c->s, data, 32, out, &n);
        case OP_SIGN_1M:
                if ((rv = f->C_SignInit(c->s, &(CK_MECHANISM) { CKM_SHA256_RSA_PKCS, NULL, 0 }, c->rsa)) != CKR_OK)
                        return rv;
                return f->C_Sign(c->s, c->big, 1 << 20, out, &n);
        default:
                return CKR_FUNCTION_NOT_SUPPORTED;
        }
}

static int bucket_of(double ns) {
        if (ns < 1)
                return 0;
        int b = (int) (log(ns) / log(BUCKET_BASE));
        return b >= N_BUCKETS ? N_BUCKETS - 1 : b;
}

static double bucket_value(int b) {
        return pow(BUCKET_BASE, b + 0.5);
}

static bool write_all(int fd, const void *p, size_t n) {
        const char *c = p;
        while (n > 0) {
                ssize_t r = write(fd, c, n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return false;
                c += r;
                n -= (size_t) r;
        }
        return true;
}

static bool read_all(int fd, void *p, size_t n) {
        char *c = p;
        while (n > 0) {
                ssize_t r = read(fd, c, n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return false;
                c += r;
                n -= (size_t) r;
        }
        return true;
}

/* Runs go's operation in a loop for go's time. */
static void client_run(Client *c, const Go *go, Result *res) {
        double start = p11t_now(), now = start;

        memset(res, 0, sizeof(*res));
        while (now - start < go->seconds) {
                double t0 = now;
                CK_RV rv = run_op(c, (Op) go->op);

                now = p11t_now();
                if (rv != CKR_OK) {
                        res->error = rv;
                        break;
                }
                res->hist[bucket_of((now - t0) * 1e9)]++;
                res->ops++;
        }
        res->seconds = now - start;
}

typedef struct Job {
        Client *client;
        const Go *go;
        Result *res;
} Job;

static void *job_main(void *userdata) {
        Job *j = userdata;

        client_run(j->client, j->go, j->res);
        return NULL;
}

/* n clients as threads of this process: one result, their operations added up over their mean time. */
static void clients_run_threads(Client *cs, int n, const Go *go, Result *res) {
        pthread_t tids[MAX_PROCS];
        Job jobs[MAX_PROCS];
        Result *rs = calloc((size_t) n, sizeof(Result));
        int started = 0;

        memset(res, 0, sizeof(*res));
        if (!rs) {
                res->error = CKR_HOST_MEMORY;
                return;
        }
        for (int i = 0; i < n; i++) {
                jobs[i] = (Job) { &cs[i], go, &rs[i] };
                if (pthread_create(&tids[i], NULL, job_main, &jobs[i]) != 0) {
                        res->error = CKR_HOST_MEMORY;
                        break;
                }
                started++;
        }
        for (int i = 0; i < started; i++) {
                pthread_join(tids[i], NULL);
                if (rs[i].error != CKR_OK)
                        res->error = rs[i].error;
                res->ops += rs[i].ops;
                res->seconds += rs[i].seconds / started;
                for (int k = 0; k < N_BUCKETS; k++)
                        res->hist[k] += rs[i].hist[k];
        }
        free(rs);
}

/* A client process: one client, or for a threads target n of them sharing one module instance. */
static void client_main(const Target *t, int n, int go_fd, int res_fd) {
        Client cs[MAX_PROCS] = {};
        Result *res = calloc(1, sizeof(Result));
        CK_SLOT_ID slot;
        P11Module m;
        CK_RV rv = CKR_GENERAL_ERROR;

        if (p11t_load(&m, t->name, t->module) && (rv = p11t_initialize(m.f)) == CKR_OK &&
            (rv = p11t_find_slot(m.f, label, &slot)) == CKR_OK)
                for (int i = 0; i < n && rv == CKR_OK; i++) {
                        rv = client_setup(&cs[i], t->name, m.f, slot);
                        cs[i].objects_seen = (CK_ULONG) n;
                }
        /* Ready (or failed) message: a Result with only `error` set. */
        res->error = rv;
        write_all(res_fd, res, sizeof(*res));
        if (rv != CKR_OK)
                _exit(1);
        for (;;) {
                Go go;
                if (!read_all(go_fd, &go, sizeof(go)) || go.op >= _OP_MAX)
                        break;
                if (n == 1)
                        client_run(&cs[0], &go, res);
                else
                        clients_run_threads(cs, n, &go, res);
                write_all(res_fd, res, sizeof(*res));
        }
        m.f->C_Finalize(NULL);
        _exit(0);
}

/* ---- the parent ---- */

static double percentile(const uint64_t *hist, uint64_t total, double p) {
        uint64_t want = (uint64_t) ceil(total * p), seen = 0;
        for (int b = 0; b < N_BUCKETS; b++) {
                seen += hist[b];
                if (seen >= want && hist[b])
                        return bucket_value(b);
        }
        return 0;
}

/* The parent's ends of every client's pipes: a new client closes them all, or another set's clients would
 * never see EOF when the parent closes its end. */
static int parent_fds[_T_MAX * MAX_PROCS * 2];
static int n_parent_fds;

/* Starts nclients clients of the target, one after another, each ready before the next starts: as many
 * processes, or one process with that many threads for a threads target. */
static bool clients_start(const Target *t, int nclients, ClientSet *set) {
        int nprocs = t->threads ? 1 : nclients;
        Result *r = calloc(1, sizeof(Result));
        bool ok = true;

        fprintf(stderr, "kyso-bench: %s, %d %s: setting up\n", t->name, nclients,
                t->threads ? "threads of one process" : nclients > 1 ? "processes" : "process");
        set->n = 0;
        for (int i = 0; i < nprocs; i++) {
                int gp[2], rp[2];
                if (pipe(gp) < 0 || pipe(rp) < 0) {
                        ok = false;
                        break;
                }
                fflush(NULL);
                set->pids[i] = fork();
                if (set->pids[i] == 0) {
                        close(gp[1]);
                        close(rp[0]);
                        for (int k = 0; k < n_parent_fds; k++)
                                close(parent_fds[k]);
                        client_main(t, t->threads ? nclients : 1, gp[0], rp[1]);
                }
                close(gp[0]);
                close(rp[1]);
                set->go[i] = gp[1];
                set->res[i] = rp[0];
                parent_fds[n_parent_fds++] = gp[1];
                parent_fds[n_parent_fds++] = rp[0];
                if (!read_all(set->res[i], r, sizeof(*r)) || r->error != CKR_OK) {
                        fprintf(stderr, "kyso-bench: %s: client set-up failed: %s\n", t->name, p11t_rv_name(r->error));
                        n_parent_fds -= 2;
                        close(set->go[i]);
                        close(set->res[i]);
                        waitpid(set->pids[i], NULL, 0);
                        ok = false;
                        break;
                }
                set->n = i + 1;
        }
        free(r);
        return ok && set->n == nprocs;
}

static void forget_parent_fd(int fd) {
        for (int k = 0; k < n_parent_fds; k++)
                if (parent_fds[k] == fd) {
                        parent_fds[k] = parent_fds[--n_parent_fds];
                        return;
                }
}

static void clients_stop(ClientSet *set) {
        for (int i = 0; i < set->n; i++) {
                /* Their numbers may be given to the next pipes: no later client may close them. */
                forget_parent_fd(set->go[i]);
                forget_parent_fd(set->res[i]);
                close(set->go[i]); /* EOF: the client finalizes and exits */
                close(set->res[i]);
        }
        for (int i = 0; i < set->n; i++)
                waitpid(set->pids[i], NULL, 0);
        set->n = 0;
}

/* All of the set's clients run op together for seconds; their results are added to acc. Returns this run's
 * ops/s summed over the clients. */
static double clients_run(ClientSet *set, Op op, double seconds, Acc *acc) {
        Result *r = calloc(1, sizeof(Result));
        Go go = { .op = (unsigned char) op, .seconds = seconds };
        double ops_per_s = 0;

        for (int i = 0; i < set->n; i++)
                write_all(set->go[i], &go, sizeof(go));
        for (int i = 0; i < set->n; i++) {
                if (!read_all(set->res[i], r, sizeof(*r))) {
                        fprintf(stderr, "kyso-bench: client %d (pid %d): no result for %s: it died?\n", i,
                                (int) set->pids[i], op_names[op]);
                        acc->error = CKR_FUNCTION_FAILED;
                        continue;
                }
                if (r->error != CKR_OK) {
                        fprintf(stderr, "kyso-bench: client %d (pid %d): %s failed after %llu calls: %s\n", i,
                                (int) set->pids[i], op_names[op], (unsigned long long) r->ops,
                                p11t_rv_name(r->error));
                        acc->error = r->error;
                }
                for (int k = 0; k < N_BUCKETS; k++)
                        acc->hist[k] += r->hist[k];
                acc->ops[i] += r->ops;
                acc->seconds[i] += r->seconds;
                if (r->seconds > 0)
                        ops_per_s += r->ops / r->seconds;
        }
        free(r);
        return ops_per_s;
}

static void row_from(Row *row, const Acc *acc, int nprocs) {
        uint64_t total = 0;

        for (int k = 0; k < N_BUCKETS; k++)
                total += acc->hist[k];
        row->done = true;
        row->error = acc->error;
        row->ops_per_s = 0;
        for (int i = 0; i < nprocs; i++)
                if (acc->seconds[i] > 0)
                        row->ops_per_s += acc->ops[i] / acc->seconds[i];
        row->p50_us = percentile(acc->hist, total, 0.50) / 1e3;
        row->p99_us = percentile(acc->hist, total, 0.99) / 1e3;
}

/* Every operation of op_mask on every target with nprocs clients each, in interleaved rounds. */
static bool run_procs(const Target *targets, int pi, unsigned op_mask) {
        int nprocs = proc_counts[pi], active[_T_MAX], n_active = 0;
        ClientSet sets[_T_MAX] = {};
        bool ok = true;

        for (int ti = 0; ti < _T_MAX; ti++) {
                if (!targets[ti].module || !*targets[ti].module || (targets[ti].threads && nprocs == 1))
                        continue;
                if (clients_start(&targets[ti], nprocs, &sets[ti]))
                        active[n_active++] = ti;
                else {
                        clients_stop(&sets[ti]);
                        ok = false;
                }
        }
        for (int op = 0; n_active > 0 && op < _OP_MAX; op++) {
                Acc *acc;

                if (!(op_mask & (1u << op)))
                        continue;
                acc = calloc(_T_MAX, sizeof(Acc));
                if (!acc) {
                        ok = false;
                        break;
                }
                for (int round = 0; round < rounds; round++)
                        for (int k = 0; k < n_active; k++) {
                                int ti = active[(round + k) % n_active];
                                double x = clients_run(&sets[ti], (Op) op, duration / rounds, &acc[ti]);

                                if (round < ROUNDS_KEPT)
                                        rows[ti][pi][op].round_ops_per_s[round] = x;
                        }
                for (int k = 0; k < n_active; k++) {
                        int ti = active[k];
                        Row *row = &rows[ti][pi][op];

                        row_from(row, &acc[ti], nprocs);
                        fprintf(stderr, "kyso-bench: %-8s %d proc  %-34s %10.0f ops/s  p50 %9.1f us  p99 %9.1f us%s%s\n",
                                targets[ti].name, nprocs, op_names[op], row->ops_per_s, row->p50_us, row->p99_us,
                                row->error ? "  ERROR " : "", row->error ? p11t_rv_name(row->error) : "");
                        if (row->error != CKR_OK)
                                ok = false;
                }
                free(acc);
        }
        for (int ti = 0; ti < _T_MAX; ti++)
                clients_stop(&sets[ti]);
        return ok;
}

/* The lowest and highest ratio of a's throughput to b's over the rounds they ran side by side. */
static void round_spread(const Row *a, const Row *b, double *ret_min, double *ret_max) {
        *ret_min = INFINITY;
        *ret_max = 0;
        for (int i = 0; i < rounds && i < ROUNDS_KEPT; i++) {
                if (b->round_ops_per_s[i] <= 0)
                        continue;
                double x = a->round_ops_per_s[i] / b->round_ops_per_s[i];
                *ret_min = fmin(*ret_min, x);
                *ret_max = fmax(*ret_max, x);
        }
        if (*ret_max == 0)
                *ret_min = 0;
}

/* One target line: the row's ratio, its spread over the rounds, and the verdict (need 0: a reference). */
static void print_target(int pi, Op op, const Row *a, const Row *b, const char *what, double need) {
        double x = a->ops_per_s / b->ops_per_s, lo, hi;

        round_spread(a, b, &lo, &hi);
        printf("  %d proc  %-34s %s %.2fx, rounds %.2f-%.2fx", proc_counts[pi], op_names[op], what, x, lo, hi);
        if (need > 0)
                printf(" (target >= %.1fx): %s\n", need, x >= need ? "met" : "MISSED");
        else
                printf("\n");
}

/*
 * What this machine charges for a reply, with no PKCS#11 in it: two processes ping-pong over a
 * socketpair, the answering one busy for work_usec before each reply, which carries the time it
 * was sent; the asking one is blocked in read() or polls with MSG_DONTWAIT. Returns the mean time
 * from sending a reply to its waiter having it, in µs (negative if the probe failed). On a virtual
 * machine whose idle vCPUs halt, a waiter blocked through a long call wakes late: that cost is in
 * every row where a client waits for a reply from another process.
 */
static double machine_wake(unsigned work_usec, bool polling, int n) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -1;
        pid_t pid = fork();
        if (pid < 0) {
                close(sv[0]);
                close(sv[1]);
                return -1;
        }
        if (pid == 0) {
                char b;
                close(sv[0]);
                while (read_all(sv[1], &b, 1)) {
                        double until = p11t_now() + work_usec / 1e6;
                        while (p11t_now() < until)
                                ;
                        double sent = p11t_now();
                        if (!write_all(sv[1], &sent, sizeof(sent)))
                                break;
                }
                _exit(0);
        }
        close(sv[1]);
        double total = 0, sent;
        int done = 0;
        for (; done < n; done++) {
                char b = 0;
                if (!write_all(sv[0], &b, 1))
                        break;
                ssize_t r;
                if (polling)
                        while ((r = recv(sv[0], &sent, sizeof(sent), MSG_DONTWAIT | MSG_WAITALL)) < 0 &&
                               (errno == EAGAIN || errno == EINTR))
                                ;
                else
                        r = read_all(sv[0], &sent, sizeof(sent)) ? (ssize_t) sizeof(sent) : -1;
                if (r != (ssize_t) sizeof(sent))
                        break;
                total += p11t_now() - sent;
        }
        close(sv[0]);
        waitpid(pid, NULL, 0);
        return done == n ? total / n * 1e6 : -1;
}

static void print_machine(void) {
        static const unsigned work[] = { 0, 1500 };
        printf("\nThis machine, no PKCS#11 (two processes ping-pong over a socketpair; us from sending a reply to "
               "its waiter having it):\n");
        for (size_t i = 0; i < ELEMENTSOF(work); i++) {
                int n = work[i] ? 300 : 3000;
                double blocked = machine_wake(work[i], false, n), polling = machine_wake(work[i], true, n);
                if (blocked < 0 || polling < 0) {
                        printf("  the probe failed: %s\n", strerror(errno));
                        return;
                }
                printf("  %-26s %7.1f blocked in read(), %7.1f polling\n",
                       work[i] ? "after 1.5 ms of work:" : "reply at once:", blocked, polling);
        }
}

static void print_ratio(double x) {
        if (x > 0)
                printf(" %8.2fx", x);
        else
                printf(" %9s", "-");
}

static void usage(void) {
        printf("usage: kyso-bench [--duration SECONDS] [--rounds N] [--procs 1|4|both] [--ops LIST]\n"
               "  --duration  seconds per row (default 2)\n"
               "  --rounds    the row's time is split into N rounds that visit the targets in turn (default 4)\n"
               "  --ops       comma-separated subset of: info,find,random,digest,rsa,ecdsa,rsa1m\n"
               "Environment: SOFTHSM_MODULE (direct; with 4 clients also the threads reference),\n"
               "KYSO_MODULE (+KYSO_SOCKET), P11KIT_CLIENT_MODULE (+P11_KIT_SERVER_ADDRESS),\n"
               "KYSO_TEST_LABEL, KYSO_TEST_PIN.\n"
               "The run ends with a probe of the machine: how long a bare socketpair reply between two processes\n"
               "takes to reach its waiter, blocked or polling, at once and after 1.5 ms of work.\n");
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "duration", required_argument, NULL, 'd' },
                { "procs", required_argument, NULL, 'p' },
                { "rounds", required_argument, NULL, 'r' },
                { "ops", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        static const char *const op_keys[_OP_MAX] = { "info", "find", "random", "digest", "rsa", "ecdsa", "rsa1m" };
        unsigned op_mask = (1u << _OP_MAX) - 1, proc_mask = 3;
        int c;

        while ((c = getopt_long(argc, argv, "d:p:r:o:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'd':
                        duration = atof(optarg);
                        if (duration <= 0) {
                                usage();
                                return 2;
                        }
                        break;
                case 'r':
                        rounds = atoi(optarg);
                        if (rounds < 1 || rounds > 1000) {
                                usage();
                                return 2;
                        }
                        break;
                case 'p':
                        proc_mask = strcmp(optarg, "1") == 0 ? 1 : strcmp(optarg, "4") == 0 ? 2 : 3;
                        break;
                case 'o': {
                        op_mask = 0;
                        char *list = strdup(optarg), *save = NULL;
                        for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                                int k;
                                for (k = 0; k < _OP_MAX; k++)
                                        if (strcmp(tok, op_keys[k]) == 0)
                                                op_mask |= 1u << k;
                                if (k == _OP_MAX && !op_mask) {
                                        usage();
                                        return 2;
                                }
                        }
                        free(list);
                        break;
                }
                default:
                        usage();
                        return c == 'h' ? 0 : 2;
                }
        }
        label = p11t_env("KYSO_TEST_LABEL");
        pin = p11t_env("KYSO_TEST_PIN");
        signal(SIGPIPE, SIG_IGN);

        Target targets[_T_MAX] = {
                [T_DIRECT] = { "direct", getenv("SOFTHSM_MODULE") },
                [T_KYSO] = { "kyso", getenv("KYSO_MODULE") },
                [T_P11KIT] = { "p11-kit", getenv("P11KIT_CLIENT_MODULE") },
                [T_THREADS] = { "threads", getenv("SOFTHSM_MODULE"), true },
        };
        bool ok = true;
        for (int pi = 0; pi < 2; pi++)
                if (proc_mask & (1u << pi))
                        ok &= run_procs(targets, pi, op_mask);

        printf("\nkyso-bench: %.1f s per row in %d interleaved rounds; ops/s summed over the client processes; "
               "latency of one call (Init + operation where there is one)\n\n",
               duration, rounds);
        printf("%-34s %-8s %5s %11s %10s %10s %9s %9s\n", "operation", "target", "procs", "ops/s", "p50 us", "p99 us",
               "vs direct", "vs p11kit");
        for (int pi = 0; pi < 2; pi++) {
                for (int op = 0; op < _OP_MAX; op++) {
                        for (int ti = 0; ti < _T_MAX; ti++) {
                                Row *r = &rows[ti][pi][op];
                                if (!r->done)
                                        continue;
                                printf("%-34s %-8s %5d %11.0f %10.1f %10.1f", op_names[op], targets[ti].name,
                                       proc_counts[pi], r->ops_per_s, r->p50_us, r->p99_us);
                                Row *d = &rows[T_DIRECT][pi][op], *p = &rows[T_P11KIT][pi][op];
                                print_ratio(ti != T_DIRECT && d->done && d->ops_per_s > 0 ? r->ops_per_s / d->ops_per_s
                                                                                           : 0);
                                print_ratio(ti == T_KYSO && p->done && p->ops_per_s > 0 ? r->ops_per_s / p->ops_per_s
                                                                                        : 0);
                                printf("%s%s\n", r->error ? "  ERROR " : "", r->error ? p11t_rv_name(r->error) : "");
                        }
                }
                printf("\n");
        }

        /* The targets, as ratios of throughput measured in this run. */
        printf("Targets (throughput ratios from this run):\n");
        for (int pi = 0; pi < 2; pi++) {
                Row *k = rows[T_KYSO][pi], *d = rows[T_DIRECT][pi], *p = rows[T_P11KIT][pi];
                struct {
                        Op op;
                        double min;
                } vs_direct[] = { { OP_SIGN_RSA, 0.9 }, { OP_SIGN_1M, 0.9 }, { OP_SIGN_ECDSA, 0.5 } };
                for (size_t i = 0; i < ELEMENTSOF(vs_direct); i++) {
                        Op op = vs_direct[i].op;
                        if (!k[op].done || !d[op].done || d[op].ops_per_s <= 0)
                                continue;
                        print_target(pi, op, &k[op], &d[op], "kyso/direct", vs_direct[i].min);
                }
                for (int op = 0; op < _OP_MAX; op++) {
                        if (!k[op].done || !p[op].done || p[op].ops_per_s <= 0)
                                continue;
                        print_target(pi, (Op) op, &k[op], &p[op], "kyso/p11-kit", op == OP_FIND ? 2.0 : 1.0);
                }
        }

        /* What sharing one SoftHSM2 instance costs, and kyso measured against that. */
        bool said = false;
        for (int pi = 0; pi < 2; pi++) {
                Row *k = rows[T_KYSO][pi], *d = rows[T_DIRECT][pi], *th = rows[T_THREADS][pi];
                static const Op signing[] = { OP_SIGN_RSA, OP_SIGN_ECDSA, OP_SIGN_1M };
                for (size_t i = 0; i < ELEMENTSOF(signing); i++) {
                        Op op = signing[i];
                        if (!th[op].done || !d[op].done || th[op].ops_per_s <= 0 || d[op].ops_per_s <= 0)
                                continue;
                        if (!said)
                                printf("\nReference, no target (threads: SoftHSM2 loaded once, its clients threads of one "
                                       "process, as behind kysod):\n");
                        said = true;
                        print_target(pi, op, &th[op], &d[op], "threads/direct", 0);
                        if (k[op].done)
                                print_target(pi, op, &k[op], &th[op], "kyso/threads", 0);
                }
        }
        print_machine();
        return ok ? 0 : 1;
}
