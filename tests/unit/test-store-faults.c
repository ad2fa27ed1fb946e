/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store when things go wrong underneath it: a read-only file system and
 * a full one (in a private mount namespace, skipped where that is not
 * allowed), and SIGKILL in the middle of writes losing nothing that was
 * reported committed.
 */
/* Its includes (cmocka, sqlite, store.h, the C library) come with the shared helpers. */
#include "test-store-util.h"

#define EXIT_SKIP 77

#define CHILD_CHECK(expr)                                                                                  \
        do {                                                                                               \
                if (!(expr)) {                                                                             \
                        fprintf(stderr, "%s:%d: check failed in child: %s\n", __FILE__, __LINE__, #expr);   \
                        return EXIT_FAILURE;                                                               \
                }                                                                                          \
        } while (0)

/* Runs f in a child with a private mount namespace, so it can mount file systems nothing else sees and
 * that vanish with it. Skips where namespaces are not allowed (not root, or no CAP_SYS_ADMIN). */
static void run_in_mount_namespace(int (*f)(const char *path), const char *path)
{
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(EXIT_SKIP);
                _exit(f(path));
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == EXIT_SKIP)
                skip();
        assert_int_equal(WEXITSTATUS(status), 0);
}

static int history_count_child(Store *s, const char *serial, size_t *ret)
{
        CustodyRecord *h = NULL;
        int r;

        r = store_custody_history(s, serial, &h, ret);
        if (r < 0)
                return r;
        custody_records_free(h, *ret);
        return 0;
}

static int bind_read_only(const char *dir)
{
        /* The type is ignored here; "none" rather than NULL keeps valgrind from flagging the call. */
        if (mount(dir, dir, "none", MS_BIND, NULL) < 0 ||
            mount(NULL, dir, "none", MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
                return -errno;
        return 0;
}

/* The state directory read-only with nobody else using the database: opening it cannot work. */
static int read_only_unused(const char *path)
{
        Store *s = NULL;

        if (bind_read_only(tmpdir) < 0)
                return EXIT_SKIP;
        CHILD_CHECK(store_open(path, &s) == -EROFS);
        CHILD_CHECK(s == NULL);
        return EXIT_SUCCESS;
}

/* Read-only while another process has the database open (its WAL index exists): reads work, and every
 * write is refused with -EROFS without changing anything. */
static int read_only_in_use(const char *path)
{
        CustodyRecord a = record("RO", "x", "1/QĐ"), cur = {};
        AuditRecord ar = { .id = 99, .event = (char *) "sign", .result = (char *) "CKR_OK" };
        StoreCertificate cert = { .subject = (char *) "CN=x" };
        AuditVerdict v;
        Store *s = NULL;
        int64_t at = 0;

        if (bind_read_only(tmpdir) < 0)
                return EXIT_SKIP;
        CHILD_CHECK(store_open(path, &s) == 0);
        CHILD_CHECK(store_custody_current(s, "RO", &cur) == 0);
        CHILD_CHECK(streq(cur.holder, "x"));
        custody_record_done(&cur);
        CHILD_CHECK(store_custody_add(s, &a, 2, "admin", NULL) == -EROFS);
        /* Equal to the current record: nothing to write, so nothing to refuse. */
        CHILD_CHECK(store_custody_import(s, &a, 1, 2, "admin") == 0);
        a.holder = (char *) "y";
        CHILD_CHECK(store_custody_import(s, &a, 1, 2, "admin") == -EROFS);
        CHILD_CHECK(store_token_seen(s, "RO", "m", "m", "l", 2) == -EROFS);
        CHILD_CHECK(store_custody_set_state(s, "RO", CUSTODY_STATE_LOST, NULL, 2, "admin") == -EROFS);
        CHILD_CHECK(store_custody_set_pin_change_required(s, "RO", true, 2, "admin") == -EROFS);
        CHILD_CHECK(store_handover(s, "RO", "z", "1/BB", false, 2, "admin") == -EROFS);
        /* Nothing may be done that cannot be logged: the append fails, and says so. */
        CHILD_CHECK(store_audit_append(s, &ar) == -EROFS);
        CHILD_CHECK(ar.id == 99);
        CHILD_CHECK(store_pin_changed(s, "RO", 2, 0, "C_SetPIN") == -EROFS);
        CHILD_CHECK(store_certificates_set(s, "RO", &cert, 1) == -EROFS);
        /* The log still reads and verifies. */
        CHILD_CHECK(store_audit_verify(s, &v) == 0 && v.intact && v.checked == 1);
        CHILD_CHECK(store_pin_last_change(s, "RO", &at) == 0 && at == 1);
        CHILD_CHECK(store_custody_current(s, "RO", &cur) == 0);
        CHILD_CHECK(streq(cur.holder, "x") && cur.state == CUSTODY_STATE_ACTIVE && !cur.pin_change_required);
        custody_record_done(&cur);
        store_close(s);
        return EXIT_SUCCESS;
}

static void test_read_only(void **state)
{
        char path[PATH_MAX];
        CustodyRecord a = record("RO", "x", "1/QĐ");
        AuditRecord ar = { .event = (char *) "custody" };
        Store *s = NULL, *other = NULL;
        Handover *h = NULL;
        size_t n;

        snprintf(path, sizeof(path), "%s", db_path("readonly"));
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_custody_add(s, &a, 1, "admin", NULL), 0);
        assert_int_equal(store_audit_append(s, &ar), 0);
        assert_int_equal(store_pin_changed(s, "RO", 1, 0, "C_InitPIN"), 0);
        store_close(s);

        run_in_mount_namespace(read_only_unused, path);

        assert_int_equal(store_open(path, &other), 0);
        run_in_mount_namespace(read_only_in_use, path);
        assert_int_equal(history_count(other, "RO"), 1);
        assert_int_equal(store_handovers(other, "RO", &h, &n), 0);
        assert_int_equal(n, 0);
        free(h);
        assert_int_equal(raw_int(path, "SELECT count(*) FROM audit"), 1);
        store_close(other);
}

/*
 * A tiny tmpfs fills up: the write that does not fit returns -ENOSPC and
 * leaves no trace, and what committed before is intact. Then a ballast file
 * is removed to make room for a small record but not for the big ones after
 * it: an import of both adds neither, though the small one alone fits.
 */
static int disk_full(const char *dir)
{
        char mnt[PATH_MAX], path[PATH_MAX + 16], ballast[PATH_MAX + 16], *big;
        CustodyRecord a = record("FULL", "x", "1/QĐ"), recs[6];
        Store *s = NULL;
        size_t n, m, size = 16 * 1024;
        int r = 0, fd;

        snprintf(mnt, sizeof(mnt), "%s/small", dir);
        CHILD_CHECK(mkdir(mnt, 0700) == 0);
        if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=320k,mode=0700") < 0)
                return EXIT_SKIP;
        snprintf(path, sizeof(path), "%s/kyso.db", mnt);
        snprintf(ballast, sizeof(ballast), "%s/ballast", mnt);
        big = malloc(size);
        CHILD_CHECK(big);
        memset(big, 'x', size - 1);
        big[size - 1] = '\0';
        fd = open(ballast, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        CHILD_CHECK(fd >= 0);
        for (int i = 0; i < 4; i++)
                CHILD_CHECK(write(fd, big, size) == (ssize_t) size);
        close(fd);

        CHILD_CHECK(store_open(path, &s) == 0);
        a.state_reason = big;
        for (n = 0; n < 1000; n++) {
                r = store_custody_add(s, &a, (int64_t) n, "admin", NULL);
                if (r < 0)
                        break;
        }
        CHILD_CHECK(r == -ENOSPC);
        CHILD_CHECK(n > 0);
        CHILD_CHECK(history_count_child(s, "FULL", &m) == 0 && m == n);

        CHILD_CHECK(unlink(ballast) == 0);
        recs[0] = record("FULL", "small", "1/QĐ");
        for (size_t i = 1; i < ELEMENTSOF(recs); i++) {
                recs[i] = a;
                recs[i].holder = (char *) (i % 2 ? "y" : "z");
        }
        CHILD_CHECK(store_custody_import(s, recs, ELEMENTSOF(recs), 1, "admin") == -ENOSPC);
        CHILD_CHECK(history_count_child(s, "FULL", &m) == 0 && m == n);
        CHILD_CHECK(store_custody_import(s, recs, 1, 1, "admin") == 1);
        CHILD_CHECK(history_count_child(s, "FULL", &m) == 0 && m == n + 1);

        /* The audit log fills the rest: the append that does not fit leaves neither record nor head
         * behind, so the chain stays whole and holds exactly the appends that returned 0. */
        {
                AuditRecord ar = { .event = (char *) "sign", .detail = big };
                AuditVerdict v;
                uint64_t appended = 0;

                for (int64_t i = 0; i < 1000; i++) {
                        ar.at = i;
                        r = store_audit_append(s, &ar);
                        if (r < 0)
                                break;
                        CHILD_CHECK(ar.id == (int64_t) appended + 1);
                        appended++;
                }
                CHILD_CHECK(r == -ENOSPC);
                CHILD_CHECK(store_audit_verify(s, &v) == 0 && v.intact && v.checked == appended);
        }
        store_close(s);
        free(big);
        return EXIT_SUCCESS;
}

static void test_disk_full(void **state)
{
        run_in_mount_namespace(disk_full, tmpdir);
}

typedef struct Report {
        int64_t kind; /* REPORT_* */
        int64_t value;
        int64_t at; /* REPORT_AUDIT: the record's time, value its id */
} Report;

enum { REPORT_CUSTODY, REPORT_HANDOVER, REPORT_SEEN, REPORT_IMPORT, REPORT_AUDIT };

/* An import in the crash test: records for one serial of its own, with text long enough to span pages, so
 * that a torn commit would show as a batch neither whole nor absent. */
#define BATCH 32

static void batch_serial(char *buf, size_t size, int64_t i)
{
        snprintf(buf, size, "BATCH-%" PRId64, i);
}

/* Writes as fast as it can and reports each write after the store said it committed. Never returns. */
_Noreturn static void crash_child(const char *path, int fd, int64_t base)
{
        CustodyRecord a = record("CRASH", "h0", "1/QĐ"), batch[BATCH];
        Store *s = NULL;
        char holder[32], serial[32], reason[600];

        if (store_open(path, &s) < 0)
                _exit(2);
        memset(reason, 'r', sizeof(reason) - 1);
        reason[sizeof(reason) - 1] = '\0';
        for (int64_t i = base;; i++) {
                Report rep = { .value = i };
                int64_t id = 0;
                int r;

                snprintf(holder, sizeof(holder), "h%" PRId64, i);
                switch (i % 5) {
                case 0:
                        a.holder = holder;
                        r = store_custody_add(s, &a, i, "crash", &id);
                        rep = (Report) { REPORT_CUSTODY, id };
                        break;
                case 1:
                        r = store_handover(s, "CRASH", holder, "BB", i % 2, i, "crash");
                        rep.kind = REPORT_HANDOVER;
                        break;
                case 2:
                        r = store_token_seen(s, "CRASH", "m", "m", holder, i);
                        rep.kind = REPORT_SEEN;
                        break;
                case 4: {
                        AuditRecord ar = { .at = i, .event = (char *) "sign", .serial = (char *) "CRASH",
                                           .result = (char *) "CKR_OK", .detail = reason };

                        r = store_audit_append(s, &ar);
                        rep = (Report) { REPORT_AUDIT, ar.id, i };
                        break;
                }
                default:
                        batch_serial(serial, sizeof(serial), i);
                        for (size_t k = 0; k < BATCH; k++) {
                                batch[k] = record(serial, k % 2 ? "x" : "y", "1/QĐ");
                                batch[k].state_reason = reason;
                        }
                        r = store_custody_import(s, batch, BATCH, i, "crash");
                        if (r >= 0 && r != BATCH)
                                _exit(5);
                        rep.kind = REPORT_IMPORT;
                        break;
                }
                if (r < 0)
                        _exit(3);
                if (write(fd, &rep, sizeof(rep)) != (ssize_t) sizeof(rep))
                        _exit(4);
        }
}

static bool has_handover_to(const Handover *h, size_t n, int64_t i)
{
        char holder[32];

        snprintf(holder, sizeof(holder), "h%" PRId64, i);
        for (size_t k = 0; k < n; k++)
                if (streq(h[k].to_holder, holder))
                        return true;
        return false;
}

static bool has_record(const CustodyRecord *h, size_t n, int64_t id)
{
        for (size_t k = 0; k < n; k++)
                if (h[k].id == id)
                        return true;
        return false;
}

/* Every import is whole or absent, and every reported one is there. */
static void check_batches(Store *s, const Report *reports, size_t n_reports, unsigned it)
{
        CustodyRecord *all = NULL;
        char serial[32];
        size_t n_all = 0;

        assert_int_equal(store_custody_all(s, &all, &n_all), 0);
        for (size_t k = 0; k < n_all; k++)
                if (strncmp(all[k].serial, "BATCH-", 6) == 0 && history_count(s, all[k].serial) != BATCH)
                        fail_msg("iteration %u: import %s is torn: %zu of %d records", it, all[k].serial,
                                 history_count(s, all[k].serial), BATCH);
        custody_records_free(all, n_all);
        for (size_t k = 0; k < n_reports; k++) {
                if (reports[k].kind != REPORT_IMPORT)
                        continue;
                batch_serial(serial, sizeof(serial), reports[k].value);
                if (history_count(s, serial) != BATCH)
                        fail_msg("iteration %u: committed import %s is lost", it, serial);
        }
}

/* The log is whole (ids consecutive, every link and the head right) and holds every acknowledged record. */
static void check_audit(Store *s, const Report *reports, size_t n_reports, unsigned it)
{
        AuditRecord *a = NULL;
        AuditVerdict v;
        size_t n = 0;

        assert_int_equal(store_audit_verify(s, &v), 0);
        if (!v.intact)
                fail_msg("iteration %u: the audit log is broken at record %" PRId64 ": %s", it,
                         v.first_bad_id, v.reason);
        assert_int_equal(store_audit_query(s, NULL, &a, &n), 0);
        assert_int_equal(v.checked, n);
        for (size_t k = 0; k < n_reports; k++) {
                const Report *r = &reports[k];

                if (r->kind != REPORT_AUDIT)
                        continue;
                /* Verified consecutive from 1, so record id is at index id - 1. */
                if (r->value < 1 || (uint64_t) r->value > n || a[r->value - 1].at != r->at)
                        fail_msg("iteration %u: acknowledged audit record %" PRId64 " is lost", it,
                                 r->value);
        }
        audit_records_free(a, n);
}

/*
 * SIGKILL at a random moment while the child writes: the file passes
 * integrity_check and holds every write the child was told had committed,
 * and the audit log verifies.
 * This catches a write reported before its COMMIT, a transaction left open,
 * and a journal setting that lets a killed writer tear the file. It cannot
 * catch synchronous=NORMAL or OFF: after SIGKILL the kernel still writes
 * out the page cache; only a power cut would show the difference.
 */
static void test_crash_safety(void **state)
{
        const unsigned iterations = 100;
        unsigned seed = (unsigned) time(NULL) ^ (unsigned) getpid();
        char path[PATH_MAX];
        size_t total = 0;

        snprintf(path, sizeof(path), "%s", db_path("crash"));
        print_message("crash seed %u\n", seed);
        for (unsigned it = 0; it < iterations; it++) {
                unsigned wait_usec = 1000 + (unsigned) rand_r(&seed) % 30000;
                Report *reports = NULL;
                size_t n_reports = 0, allocated = 0, filled = 0;
                Report buf[256];
                uint64_t deadline = 0;
                int pipefd[2], status;
                bool killed = false;
                pid_t pid;

                assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
                fflush(NULL);
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        close(pipefd[0]);
                        crash_child(path, pipefd[1], (int64_t) it * 1000000);
                }
                close(pipefd[1]);

                /* Read until the deadline (counted from the first committed write), then kill, then drain:
                 * whatever is in the pipe was committed before the kill. */
                for (;;) {
                        struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
                        int timeout = 10000;
                        ssize_t k;

                        if (deadline > 0 && !killed) {
                                uint64_t t = monotonic_usec();

                                if (t >= deadline) {
                                        assert_int_equal(kill(pid, SIGKILL), 0);
                                        killed = true;
                                } else
                                        timeout = (int) ((deadline - t + 999) / 1000);
                        }
                        if (!killed) {
                                int pr = poll(&p, 1, timeout);

                                assert_true(pr >= 0);
                                if (pr == 0)
                                        continue;
                        }
                        k = read(pipefd[0], (char *) buf + filled, sizeof(buf) - filled);
                        assert_true(k >= 0);
                        if (k == 0)
                                break;
                        filled += (size_t) k;
                        if (n_reports + filled / sizeof(Report) > allocated) {
                                allocated = (n_reports + filled / sizeof(Report)) * 2;
                                reports = realloc(reports, allocated * sizeof(Report));
                                assert_non_null(reports);
                        }
                        memcpy(reports + n_reports, buf, filled / sizeof(Report) * sizeof(Report));
                        n_reports += filled / sizeof(Report);
                        memmove(buf, (char *) buf + filled / sizeof(Report) * sizeof(Report),
                                filled % sizeof(Report));
                        filled %= sizeof(Report);
                        if (deadline == 0 && n_reports > 0)
                                deadline = monotonic_usec() + wait_usec;
                }
                close(pipefd[0]);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
                        fail_msg("iteration %u: the writer died on its own (status 0x%x)", it,
                                 (unsigned) status);

                {
                        _cleanup_(freep) char *ok = integrity_check(path);

                        if (!streq(ok, "ok"))
                                fail_msg("iteration %u (seed above): integrity_check: %s", it, ok);
                }
                {
                        Store *s = NULL;
                        CustodyRecord *h = NULL;
                        Handover *ho = NULL;
                        StoreToken t = {};
                        size_t n_h = 0, n_ho = 0;
                        int64_t seen = INT64_MIN;

                        assert_int_equal(store_open(path, &s), 0);
                        assert_int_equal(store_custody_history(s, "CRASH", &h, &n_h), 0);
                        assert_int_equal(store_handovers(s, "CRASH", &ho, &n_ho), 0);
                        for (size_t k = 0; k < n_reports; k++) {
                                const Report *r = &reports[k];

                                if (r->kind == REPORT_CUSTODY && !has_record(h, n_h, r->value))
                                        fail_msg("iteration %u: committed custody record %" PRId64
                                                 " is lost", it, r->value);
                                if (r->kind == REPORT_HANDOVER && !has_handover_to(ho, n_ho, r->value))
                                        fail_msg("iteration %u: committed handover %" PRId64 " is lost", it,
                                                 r->value);
                                if (r->kind == REPORT_SEEN && r->value > seen)
                                        seen = r->value;
                        }
                        if (seen != INT64_MIN) {
                                assert_int_equal(store_token_get(s, "CRASH", &t), 0);
                                if (t.last_seen < seen)
                                        fail_msg("iteration %u: token seen at %" PRId64
                                                 " is lost (last_seen %" PRId64 ")", it, seen, t.last_seen);
                                store_token_done(&t);
                        }
                        custody_records_free(h, n_h);
                        handovers_free(ho, n_ho);
                        check_batches(s, reports, n_reports, it);
                        check_audit(s, reports, n_reports, it);
                        store_close(s);
                }
                total += n_reports;
                free(reports);
        }
        print_message("crash: %u kills, %zu committed writes checked\n", iterations, total);
        assert_true(total > 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_read_only),
                cmocka_unit_test(test_disk_full),
                cmocka_unit_test(test_crash_safety),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
