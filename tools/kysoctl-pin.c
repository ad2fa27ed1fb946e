/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * "kysoctl pin status" reads the PIN properties of kysod's token objects
 * (one GetManagedObjects call) and tells the holder what to do.
 *
 * "kysoctl pin change" changes a user PIN the way any PKCS#11 application
 * would, through kyso-pkcs11.so and kysod, so that kysod applies its PIN
 * rules, custody and logging and restarts the PIN's age. Before anything
 * reaches the token, the new PIN is checked here with kysod's own rule
 * (policy_pin_quality() from daemon/policy.c): a weak PIN costs the user
 * nothing and the token sees no attempt. kysod checks again, as it must.
 *
 * No C_Login: kysod may answer CKR_PIN_EXPIRED to the login of an overdue
 * PIN, and C_SetPIN in a public read/write session changes the user PIN
 * (PKCS#11 2.40, 5.6) after checking the old one. PINs live in one locked
 * struct that is wiped on every way out.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <systemd/sd-bus.h>
#include <termios.h>
#include <unistd.h>

#include "config.h"
#include "kysoctl-bus.h"
#include "kysoctl-output.h"
#include "kysoctl-pin.h"
#include "kysoctl-tokens.h"
#include "kysoctl-util.h"
#include "log.h"
#include "macro.h"
#include "pkcs11.h"
#include "policy.h"

/* kysod.conf's default [pin] min_length, for when kysod cannot be asked for the token's. */
#define PIN_MIN_LENGTH_DEFAULT 8U
/* Longer than any token takes (ulMaxPinLen is rarely over 64); the rest of a longer line is refused. */
#define PIN_MAX 256
/* Looking up the token on the bus is a convenience: it must not hold up a PIN change. */
#define PIN_BUS_TIMEOUT_USEC (5U * 1000000U)

enum {
        OPT_ALL = 0x200,
        OPT_LABEL,
        OPT_MODULE,
};

const struct option pin_status_options[] = {
        { "all", no_argument, NULL, OPT_ALL },
        {},
};

const struct option pin_change_options[] = {
        { "label", required_argument, NULL, OPT_LABEL },
        { "module", required_argument, NULL, OPT_MODULE },
        {},
};

static const char *const return_for_recovery =
        "Do not try to unblock it yourself: return the token to the IT department (or to the CA that "
        "issued it) for recovery.";

/* ------------------------------------------------------------------------- */
/* The caller: who holds what                                                 */

typedef struct Caller {
        uid_t uid;
        char *name; /* NULL: the uid has no user name */
        gid_t *groups;
        int n_groups;
} Caller;

static void caller_done(Caller *c)
{
        free(c->name);
        free(c->groups);
        *c = (Caller) {};
}

/* kysod knows a client by its effective uid (SO_PEERCRED, the bus's credentials). */
static int caller_get(Caller *ret)
{
        Caller c = { .uid = geteuid() };
        struct passwd *pw;
        int n = 32;

        errno = 0;
        pw = getpwuid(c.uid);
        if (!pw) {
                *ret = c; /* no name: holds no token by name or group */
                return 0;
        }
        c.name = strdup(pw->pw_name);
        if (!c.name)
                return -ENOMEM;
        for (int attempt = 0; attempt < 8; attempt++) {
                gid_t *g = reallocarray(c.groups, (size_t) n, sizeof(gid_t));
                int k = n;

                if (!g) {
                        caller_done(&c);
                        return -ENOMEM;
                }
                c.groups = g;
                if (getgrouplist(c.name, pw->pw_gid, c.groups, &k) >= 0) {
                        c.n_groups = k;
                        break;
                }
                n = k > n ? k : n * 2;
        }
        *ret = c;
        return 0;
}

static bool caller_in_group(const Caller *c, const char *group)
{
        struct group *gr = getgrnam(group);

        for (int i = 0; gr && i < c->n_groups; i++)
                if (c->groups[i] == gr->gr_gid)
                        return true;
        return false;
}

/* As kysod decides custody: the user by name, or a member of the group after '@'. */
static bool caller_holds(const Caller *c, const char *holder)
{
        if (!c->name || !holder || !*holder)
                return false;
        if (holder[0] == '@')
                return caller_in_group(c, holder + 1);
        return streq(holder, c->name);
}

static bool caller_is_admin(sd_bus *bus, const Caller *c)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(freep) char *group = NULL;

        if (c->uid == 0)
                return true;
        if (sd_bus_get_property_string(bus, KYSO_BUS_NAME, KYSO_BUS_PATH, KYSO_MANAGER_IFACE, "AdminGroup",
                                       &error, &group) < 0)
                return false;
        return *group && caller_in_group(c, group);
}

/* Tokens of the kinds a CA issues (Government PKI): their PIN is recovered by the issuer only. */
static bool kind_is_issued(const char *kind)
{
        return kind && (streq(kind, "organization") || streq(kind, "personal"));
}

/* ------------------------------------------------------------------------- */
/* pin status                                                                 */

static json_object *pin_status_json(const TokenProps *t)
{
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "serial", t->serial ? json_object_new_string(t->serial) : NULL);
        json_object_object_add(o, "label", t->label ? json_object_new_string(t->label) : NULL);
        json_object_object_add(o, "kind", t->kind ? json_object_new_string(t->kind) : NULL);
        json_object_object_add(o, "holder", t->holder ? json_object_new_string(t->holder) : NULL);
        json_object_object_add(o, "present", json_object_new_boolean(t->present));
        json_object_object_add(o, "pin_changed_at", json_time(t->pin_changed_at));
        json_object_object_add(o, "pin_due_at", json_time(t->pin_due_at));
        json_object_object_add(o, "pin_state", t->pin_state ? json_object_new_string(t->pin_state) : NULL);
        json_object_object_add(o, "pin_mode", t->pin_mode ? json_object_new_string(t->pin_mode) : NULL);
        json_object_object_add(o, "pin_min_length",
                               t->pin_min_length ? json_object_new_int64(t->pin_min_length) : NULL);
        return o;
}

/* What the holder should do about a token's PIN, if anything: one paragraph. */
static void pin_advice(const TokenProps *t)
{
        _cleanup_(freep) char *serial = text_sanitize(str_or(t->serial, "?"));
        const char *state = str_or(t->pin_state, "");
        const char *s = serial ? serial : "?";
        char due[TIME_TEXT_MAX];

        format_date_local(t->pin_due_at, due, sizeof(due));
        if (streq(state, "locked")) {
                if (kind_is_issued(t->kind))
                        printf("\nToken %s: the PIN is locked. %s\n", s, return_for_recovery);
                else
                        printf("\nToken %s: the PIN is locked. Ask the IT department to unblock it.\n", s);
        } else if (streq(state, "expired")) {
                if (t->pin_due_at)
                        printf("\nToken %s: the PIN was due on %s. Change it now: kysoctl pin change %s\n",
                               s, due, s);
                else
                        printf("\nToken %s: the PIN is due now (kysod has seen no PIN change and no custody "
                               "assignment to count its age from). Change it: kysoctl pin change %s\n",
                               s, s);
                if (t->pin_mode && streq(t->pin_mode, "enforce"))
                        printf("Until then kysod refuses to log in with it.\n");
        } else if (streq(state, "change-required"))
                printf("\nToken %s: the PIN must be changed before the next signature (the custody record "
                       "asks for it, as after a handover): kysoctl pin change %s\n",
                       s, s);
        else if (streq(state, "expiring"))
                printf("\nToken %s: the PIN is due on %s. Change it: kysoctl pin change %s\n", s, due, s);
        else if (streq(state, "final-try"))
                printf("\nToken %s: one more wrong PIN locks the token. If you are not sure of the PIN, "
                       "ask the IT department before you try it.\n",
                       s);
        else if (streq(state, "count-low"))
                printf("\nToken %s: wrong PINs were entered; the token has few tries left.\n", s);
}

/* The table, then advice on the caller's own tokens (only their holder can act on it). */
static int print_pin_table(const TokenProps *const *a, size_t n, const Caller *caller)
{
        static const char *const header[] = { "SERIAL", "LABEL", "HOLDER", "LAST CHANGE", "DUE", "STATE" };
        Table table;
        int r;

        table_init(&table, header, ELEMENTSOF(header));
        for (size_t i = 0; i < n; i++) {
                const TokenProps *t = a[i];
                char changed[TIME_TEXT_MAX], due[TIME_TEXT_MAX];

                table_add(&table, str_or(t->serial, "?"));
                table_add(&table, t->label);
                table_add(&table, t->holder);
                table_add(&table, format_date_local(t->pin_changed_at, changed, sizeof(changed)));
                /* 0 with a state: kysod knows no base date, the PIN is due now. */
                table_add(&table, t->pin_due_at || !t->pin_state ? format_date_local(t->pin_due_at, due,
                                                                                      sizeof(due))
                                                                 : "now");
                table_add(&table, t->pin_state);
        }
        r = table_print(&table);
        if (r != EXIT_OK)
                return r;
        for (size_t i = 0; i < n; i++)
                if (caller_holds(caller, a[i]->holder))
                        pin_advice(a[i]);
        return EXIT_OK;
}

int run_pin_status(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(caller_done) Caller caller = {};
        _cleanup_(freep) const TokenProps **shown = NULL;
        TokenProps *tokens = NULL;
        size_t n = 0, n_shown = 0;
        bool all = false, any_state = false;
        int r;

        if (argc > 1) {
                log_error("'pin status' takes no arguments; see 'kysoctl pin status --help'.");
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < opts->n_cmd_options; i++)
                if (opts->cmd_options[i].id == OPT_ALL)
                        all = true;

        r = caller_get(&caller);
        if (r < 0)
                return log_oom(), EXIT_FAILED;
        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = managed_objects_call(bus, 0, true, &error, &reply);
        if (r < 0)
                return bus_failure(bus, r, &error, ACCESS_READ, "Cannot read the tokens' PIN states");
        r = tokens_parse(reply, &tokens, &n);
        if (r == -ENOMEM)
                return log_oom(), EXIT_FAILED;
        if (r < 0)
                return bus_reply_invalid(r);
        if (!all)
                all = caller_is_admin(bus, &caller);

        shown = calloc(n ? n : 1, sizeof(*shown));
        if (!shown) {
                token_props_free(tokens, n);
                return log_oom(), EXIT_FAILED;
        }
        for (size_t i = 0; i < n; i++) {
                any_state = any_state || tokens[i].pin_state;
                if (all || caller_holds(&caller, tokens[i].holder))
                        shown[n_shown++] = &tokens[i];
        }
        if (n > 0 && !any_state)
                log_warning("kysod does not report PIN states: is it older than kysoctl %s?",
                            PACKAGE_VERSION);

        if (opts->json) {
                json_object *a = json_object_new_array();

                for (size_t i = 0; a && i < n_shown; i++)
                        json_object_array_add(a, pin_status_json(shown[i]));
                r = output_json(a);
        } else if (n_shown == 0 && !all) {
                _cleanup_(freep) char *name = text_sanitize(caller.name);

                if (caller.name)
                        printf("You (%s) hold no token that kysod knows of. 'kysoctl pin status --all' "
                               "lists every token.\n",
                               name ? name : "?");
                else
                        printf("You (uid %u) have no user name, so you hold no token. 'kysoctl pin status "
                               "--all' lists every token.\n",
                               (unsigned) caller.uid);
                r = EXIT_OK;
        } else if (n_shown == 0) {
                printf("kysod knows no tokens yet: none has been inserted or assigned.\n");
                r = EXIT_OK;
        } else
                r = print_pin_table(shown, n_shown, &caller);
        token_props_free(tokens, n);
        return r != EXIT_OK ? r : output_flush();
}

/* ------------------------------------------------------------------------- */
/* Reading PINs                                                               */

typedef struct Pins {
        char old[PIN_MAX];
        char new[PIN_MAX];
        char again[PIN_MAX];
        size_t old_len, new_len, again_len;
        bool locked; /* mlock()ed */
} Pins;

static void pins_wipe(Pins *p)
{
        bool locked = p->locked;

        explicit_bzero(p, sizeof(*p));
        if (locked)
                (void) munlock(p, sizeof(*p));
}

/* Where PINs come from: the controlling terminal without echo, else standard input, line by line. */
typedef struct PinSource {
        int fd;     /* read from */
        int out;    /* prompts go here */
        bool tty;   /* fd is a terminal: echo is turned off while reading */
        bool owned; /* fd is our /dev/tty, closed afterwards */
} PinSource;

static volatile sig_atomic_t pin_signal;

static void pin_signal_handler(int sig)
{
        pin_signal = sig;
}

static void pin_source_open(PinSource *ret)
{
        int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);

        if (fd >= 0 && isatty(fd)) {
                *ret = (PinSource) { .fd = fd, .out = fd, .tty = true, .owned = true };
                return;
        }
        if (fd >= 0)
                close(fd);
        /* No controlling terminal; standard input may still be one (setsid), and must not echo either. */
        *ret = (PinSource) { .fd = STDIN_FILENO, .out = STDERR_FILENO, .tty = isatty(STDIN_FILENO) };
}

static void pin_source_close(PinSource *s)
{
        if (s->owned)
                close(s->fd);
        *s = (PinSource) { .fd = -1, .out = -1 };
}

/*
 * Reads one line into buf (NUL-terminated, without the line end), one byte at a time so that
 * nothing is read past it (stdio would keep a copy of the PIN, and of the next one, in its
 * buffer). 0, -ENODATA at the end of input before anything was read, -E2BIG for a line of
 * PIN_MAX bytes or more, -EINTR when a signal came (pin_signal), -errno.
 */
static int read_line(int fd, char *buf, size_t size, size_t *ret_len)
{
        size_t len = 0;
        bool too_long = false, any = false;
        char c = 0;
        int r = 0;

        for (;;) {
                ssize_t k = read(fd, &c, 1);

                if (k < 0) {
                        if (errno == EINTR && !pin_signal)
                                continue;
                        r = errno == EINTR ? -EINTR : negative_errno();
                        break;
                }
                if (k == 0) {
                        if (!any)
                                r = -ENODATA;
                        break;
                }
                any = true;
                if (c == '\n')
                        break;
                if (len + 1 < size)
                        buf[len++] = c;
                else
                        too_long = true;
        }
        explicit_bzero(&c, sizeof(c));
        if (r == 0 && too_long)
                r = -E2BIG;
        if (r < 0) {
                explicit_bzero(buf, size);
                return r;
        }
        if (len > 0 && buf[len - 1] == '\r')
                len--;
        buf[len] = '\0';
        *ret_len = len;
        return 0;
}

/*
 * Asks for one PIN. On a terminal, echo is off while it is typed and back on afterwards, also
 * when SIGINT, SIGTERM, SIGHUP or SIGQUIT interrupt (then the signal is raised again once the
 * terminal is restored); Ctrl-Z is ignored meanwhile, as a suspended shell would not echo.
 */
static int pin_read(const PinSource *src, const char *prompt, char *buf, size_t size, size_t *ret_len)
{
        static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP };
        struct sigaction sa = { .sa_handler = pin_signal_handler }, old_sa[ELEMENTSOF(sigs)];
        struct termios saved, noecho;
        bool echo_off = false;
        int r;

        (void) write_full(src->out, prompt, strlen(prompt));
        if (!src->tty)
                return read_line(src->fd, buf, size, ret_len);

        pin_signal = 0;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++) {
                struct sigaction *a = &sa, ign = { .sa_handler = SIG_IGN };

                if (sigs[i] == SIGTSTP)
                        a = &ign;
                (void) sigaction(sigs[i], a, &old_sa[i]);
        }
        if (tcgetattr(src->fd, &saved) == 0) {
                noecho = saved;
                noecho.c_lflag &= ~(tcflag_t) (ECHO | ECHOE | ECHOK | ECHONL);
                echo_off = tcsetattr(src->fd, TCSAFLUSH, &noecho) == 0;
        }
        r = read_line(src->fd, buf, size, ret_len);
        if (echo_off)
                (void) tcsetattr(src->fd, TCSAFLUSH, &saved);
        (void) write_full(src->out, "\n", 1); /* the Enter that was not echoed */
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                (void) sigaction(sigs[i], &old_sa[i], NULL);
        /* Also a signal that came just as Enter was pressed: the user asked to stop. */
        if (pin_signal) {
                explicit_bzero(buf, size);
                return -EINTR;
        }
        return r;
}

static int pin_read_failed(int r, const char *what)
{
        if (r == -ENODATA)
                log_error("No %s given (end of input). Nothing was changed.", what);
        else if (r == -E2BIG)
                log_error("The %s is too long (%d characters at most). Nothing was changed.", what,
                          PIN_MAX - 1);
        else if (r != -EINTR)
                log_error_errno(r, "Cannot read the %s: %m", what);
        return EXIT_FAILED;
}

/* ------------------------------------------------------------------------- */
/* The PKCS#11 side                                                           */

static const char *ckr_name(CK_RV rv, char *buf, size_t size)
{
        static const struct {
                CK_RV rv;
                const char *name;
        } names[] = {
#define N(x) { x, #x }
                N(CKR_OK), N(CKR_HOST_MEMORY), N(CKR_SLOT_ID_INVALID), N(CKR_GENERAL_ERROR),
                N(CKR_FUNCTION_FAILED), N(CKR_ARGUMENTS_BAD), N(CKR_DEVICE_ERROR), N(CKR_DEVICE_MEMORY),
                N(CKR_DEVICE_REMOVED), N(CKR_FUNCTION_CANCELED), N(CKR_FUNCTION_NOT_SUPPORTED),
                N(CKR_PIN_INCORRECT), N(CKR_PIN_INVALID), N(CKR_PIN_LEN_RANGE), N(CKR_PIN_EXPIRED),
                N(CKR_PIN_LOCKED), N(CKR_SESSION_CLOSED), N(CKR_SESSION_COUNT),
                N(CKR_SESSION_HANDLE_INVALID), N(CKR_SESSION_READ_ONLY), N(CKR_SESSION_READ_WRITE_SO_EXISTS),
                N(CKR_TOKEN_NOT_PRESENT), N(CKR_TOKEN_NOT_RECOGNIZED), N(CKR_TOKEN_WRITE_PROTECTED),
                N(CKR_USER_NOT_LOGGED_IN), N(CKR_USER_PIN_NOT_INITIALIZED),
                N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN), N(CKR_CRYPTOKI_NOT_INITIALIZED),
                N(CKR_CRYPTOKI_ALREADY_INITIALIZED), N(CKR_FUNCTION_REJECTED),
#undef N
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (names[i].rv == rv)
                        return names[i].name;
        snprintf(buf, size, "CK_RV 0x%08lx", (unsigned long) rv);
        return buf;
}

typedef struct P11 {
        void *dl;
        CK_FUNCTION_LIST_PTR f;
        bool initialized;
        CK_SESSION_HANDLE session; /* CK_INVALID_HANDLE: none */
} P11;

static void p11_done(P11 *p)
{
        if (p->session != CK_INVALID_HANDLE)
                (void) p->f->C_CloseSession(p->session);
        if (p->initialized)
                (void) p->f->C_Finalize(NULL);
        if (p->dl)
                (void) dlclose(p->dl);
        *p = (P11) { .session = CK_INVALID_HANDLE };
}

/*
 * Blank-padded PKCS#11 text as a C string, trailing blanks (and NULs) removed, control bytes
 * made '?' since it is printed (serials are printable ASCII on every token that keeps the rules).
 */
static void p11_text(const CK_UTF8CHAR *p, size_t n, char *buf)
{
        memcpy(buf, p, n);
        while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\0'))
                n--;
        buf[n] = '\0';
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) buf[i] < 0x20 || buf[i] == 0x7f)
                        buf[i] = '?';
}

static int p11_load(P11 *p, const char *path, const char *socket_path)
{
        CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
        char name[64];
        CK_RV rv;

        *p = (P11) { .session = CK_INVALID_HANDLE };
        p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!p->dl) {
                log_error("Cannot load the kyso PKCS#11 module: %s. Is kyso installed? (--module PATH or "
                          "KYSO_MODULE names another.)",
                          dlerror());
                return EXIT_FAILED;
        }
        *(void **) &get_list = dlsym(p->dl, "C_GetFunctionList");
        if (!get_list || get_list(&p->f) != CKR_OK || !p->f) {
                log_error("%s is not a PKCS#11 module (no usable C_GetFunctionList).", path);
                return EXIT_FAILED;
        }
        rv = p->f->C_Initialize(NULL);
        if (rv == CKR_DEVICE_ERROR) {
                log_error("Cannot reach kysod at %s: is it running ('systemctl status kysod')? Nothing was "
                          "changed.",
                          socket_path);
                return EXIT_FAILED;
        }
        if (rv != CKR_OK) {
                log_error("The kyso PKCS#11 module %s failed to start: %s.", path,
                          ckr_name(rv, name, sizeof(name)));
                return EXIT_FAILED;
        }
        p->initialized = true;
        return 0;
}

typedef struct SlotToken {
        CK_SLOT_ID slot;
        char serial[sizeof(((CK_TOKEN_INFO *) NULL)->serialNumber) + 1];
        char label[sizeof(((CK_TOKEN_INFO *) NULL)->label) + 1];
        CK_FLAGS flags;
} SlotToken;

/*
 * The present token matching serial or label, or the only one when neither is given: 0 and
 * ret, or an exit status (logged).
 */
static int p11_find_token(P11 *p, const char *serial, const char *label, SlotToken *ret)
{
        _cleanup_(freep) CK_SLOT_ID *slots = NULL;
        _cleanup_(freep) SlotToken *found = NULL;
        CK_ULONG n = 0;
        size_t n_found = 0, match = SIZE_MAX, matches = 0;
        char name[64];
        CK_RV rv;

        rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n);
        if (rv == CKR_OK && n > 0) {
                slots = calloc(n, sizeof(*slots));
                if (!slots)
                        return log_oom(), EXIT_FAILED;
                rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
        }
        if (rv != CKR_OK) {
                log_error("Cannot list kysod's tokens: %s.", ckr_name(rv, name, sizeof(name)));
                return EXIT_FAILED;
        }
        found = calloc(n ? n : 1, sizeof(*found));
        if (!found)
                return log_oom(), EXIT_FAILED;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO info;
                SlotToken *t = &found[n_found];

                if (p->f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
                        continue; /* pulled out meanwhile */
                /* A blank token (SoftHSM2 keeps a free slot with one) has no PIN to change. */
                if (!(info.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                t->slot = slots[i];
                p11_text(info.serialNumber, sizeof(info.serialNumber), t->serial);
                p11_text(info.label, sizeof(info.label), t->label);
                t->flags = info.flags;
                if ((serial && streq(t->serial, serial)) || (label && streq(t->label, label))) {
                        match = n_found;
                        matches++;
                }
                n_found++;
        }

        if (serial || label) {
                if (matches == 0) {
                        log_error("No token with %s %s is plugged in. 'kysoctl pin status' lists your "
                                  "tokens.",
                                  serial ? "serial" : "label", serial ? serial : label);
                        return EXIT_NO_TOKEN;
                }
                if (matches > 1) {
                        log_error("%zu tokens are labelled \"%s\": give the serial instead (kysoctl pin "
                                  "change SERIAL).",
                                  matches, label ? label : serial);
                        return EXIT_USAGE;
                }
                *ret = found[match];
                return 0;
        }
        if (n_found == 0) {
                log_error("No token is plugged in: plug yours in and try again.");
                return EXIT_NO_TOKEN;
        }
        if (n_found > 1) {
                log_error("%zu tokens are plugged in: say which one, as 'kysoctl pin change SERIAL':",
                          n_found);
                for (size_t i = 0; i < n_found; i++) {
                        _cleanup_(freep) char *s = text_sanitize(found[i].serial);
                        _cleanup_(freep) char *l = text_sanitize(found[i].label);

                        fprintf(stderr, "  %s  \"%s\"\n", s ? s : "?", l ? l : "?");
                }
                return EXIT_USAGE;
        }
        *ret = found[0];
        return 0;
}

/* After CKR_PIN_INCORRECT: what the token now says of the tries left. */
static void explain_wrong_pin(P11 *p, const SlotToken *t)
{
        CK_TOKEN_INFO info;
        const char *tries = "The token does not say how many tries are left; each wrong PIN uses one up.";

        if (p->f->C_GetTokenInfo(t->slot, &info) == CKR_OK) {
                if (info.flags & CKF_USER_PIN_LOCKED) {
                        log_error("The current PIN was wrong, and now the PIN of token %s is locked. %s",
                                  t->serial, return_for_recovery);
                        return;
                }
                if (info.flags & CKF_USER_PIN_FINAL_TRY)
                        tries = "Only one try is left: one more wrong PIN locks the token.";
                else if (info.flags & CKF_USER_PIN_COUNT_LOW)
                        tries = "Few tries are left.";
        }
        log_error("The current PIN is wrong; nothing was changed. %s See 'kysoctl pin status'.", tries);
}

/* The exit status for what C_SetPIN answered (logged). */
static int set_pin_result(P11 *p, const SlotToken *t, CK_RV rv, unsigned min_length)
{
        char name[64];

        switch (rv) {
        case CKR_OK:
                return EXIT_OK;
        case CKR_PIN_INCORRECT:
                explain_wrong_pin(p, t);
                return EXIT_FAILED;
        case CKR_PIN_LOCKED:
                log_error("The PIN of token %s is locked. %s", t->serial, return_for_recovery);
                return EXIT_FAILED;
        case CKR_PIN_INVALID:
        case CKR_PIN_LEN_RANGE:
                log_error("kysod refused the new PIN (%s): it does not meet the PIN rules for this token "
                          "(at least %u characters; no repeated character, no run like 12345678, no common "
                          "PIN, not the old PIN). Nothing was changed.",
                          ckr_name(rv, name, sizeof(name)), min_length);
                return EXIT_FAILED;
        case CKR_TOKEN_NOT_RECOGNIZED:
                log_error("kysod refused: you are not the holder of token %s (custody). 'kysoctl token %s' "
                          "shows who holds it.",
                          t->serial, t->serial);
                return EXIT_DENIED;
        case CKR_USER_PIN_NOT_INITIALIZED:
                log_error("Token %s has no user PIN yet: the IT department must initialise it.", t->serial);
                return EXIT_FAILED;
        case CKR_TOKEN_WRITE_PROTECTED:
                log_error("Token %s is write-protected: its PIN cannot be changed.", t->serial);
                return EXIT_FAILED;
        case CKR_DEVICE_REMOVED:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_SESSION_CLOSED:
        case CKR_SESSION_HANDLE_INVALID:
                log_error("The token or kysod went away during the change (%s): the PIN may or may not have "
                          "been changed. Plug the token in and try the new PIN; 'kysoctl pin status' shows "
                          "the last change kysod recorded.",
                          ckr_name(rv, name, sizeof(name)));
                return EXIT_FAILED;
        default:
                log_error("Changing the PIN of token %s failed: %s. Nothing was changed.", t->serial,
                          ckr_name(rv, name, sizeof(name)));
                return EXIT_FAILED;
        }
}

/* ------------------------------------------------------------------------- */
/* pin change                                                                 */

/* What the bus says of the tokens, when it answers: the reply keeps the strings alive. */
typedef struct BusView {
        sd_bus *bus;
        sd_bus_message *reply;
        TokenProps *tokens;
        size_t n;
} BusView;

static void bus_view_done(BusView *v)
{
        token_props_free(v->tokens, v->n);
        sd_bus_message_unref(v->reply);
        sd_bus_flush_close_unref(v->bus);
        *v = (BusView) {};
}

/* Best effort: without the bus (or kysod on it) the view stays empty and defaults apply. */
static void bus_view_get(BusView *v)
{
        int r;

        *v = (BusView) {};
        r = sd_bus_open_system(&v->bus);
        if (r >= 0)
                r = managed_objects_call(v->bus, PIN_BUS_TIMEOUT_USEC, false, NULL, &v->reply);
        if (r >= 0)
                r = tokens_parse(v->reply, &v->tokens, &v->n);
        if (r < 0) {
                log_debug_errno(r, "No token properties from the bus (%m): the PIN rules' defaults apply.");
                bus_view_done(v);
        }
}

static const TokenProps *bus_view_find(const BusView *v, const char *serial, const char *label)
{
        const TokenProps *found = NULL;

        for (size_t i = 0; i < v->n; i++) {
                const TokenProps *t = &v->tokens[i];

                if (serial && t->serial && streq(t->serial, serial))
                        return t;
                /* A label names a token only when one present token has it. */
                if (label && t->label && t->present && streq(t->label, label)) {
                        if (found)
                                return NULL;
                        found = t;
                }
        }
        return found;
}

static unsigned min_length_of(const TokenProps *t)
{
        return t && t->pin_min_length > 0 ? t->pin_min_length : PIN_MIN_LENGTH_DEFAULT;
}

/* policy_pin_quality() on the PINs read: 0, or EXIT_FAILED with the reason told. */
static int check_quality(const Pins *pins, unsigned min_length)
{
        PolicyDecision d = policy_pin_quality((const uint8_t *) pins->new, pins->new_len,
                                              (const uint8_t *) pins->old, pins->old_len, min_length);
        const char *why = d.reason ? d.reason : "the new PIN does not meet the PIN rules";

        if (d.rv == CKR_OK)
                return 0;
        if (d.rv == CKR_PIN_LEN_RANGE)
                log_error("Nothing was changed: %s (at least %u characters for this token). The token was "
                          "not asked; choose a longer PIN.",
                          why, min_length);
        else
                log_error("Nothing was changed: %s. The token was not asked; choose another PIN (not one "
                          "character repeated, not a run like 12345678, not a common PIN, not the old one).",
                          why);
        return EXIT_FAILED;
}

/* A signal came while a PIN was typed; the terminal is restored: die of it, as the user asked. */
static void pin_interrupted(Pins *pins)
{
        int sig = pin_signal;

        pins_wipe(pins);
        signal(sig, SIG_DFL);
        raise(sig);
}

static int read_pins(Pins *pins, const char *what)
{
        static const char *const names[] = { "current PIN", "new PIN", "new PIN (again)" };
        char *const bufs[] = { pins->old, pins->new, pins->again };
        size_t *const lens[] = { &pins->old_len, &pins->new_len, &pins->again_len };
        PinSource src;
        char prompt[256];
        size_t i;
        int r = 0;

        snprintf(prompt, sizeof(prompt), "Current PIN%s: ", what);
        pin_source_open(&src);
        for (i = 0; i < ELEMENTSOF(bufs); i++) {
                const char *p = i == 0 ? prompt : i == 1 ? "New PIN: " : "New PIN again: ";

                r = pin_read(&src, p, bufs[i], PIN_MAX, lens[i]);
                if (r < 0)
                        break;
        }
        pin_source_close(&src);
        if (r == -EINTR && pin_signal)
                pin_interrupted(pins);
        if (r < 0)
                return pin_read_failed(r, names[i]);
        if (pins->old_len == 0) {
                log_error("No current PIN given. Nothing was changed.");
                return EXIT_FAILED;
        }
        if (pins->new_len != pins->again_len || memcmp(pins->new, pins->again, pins->new_len) != 0) {
                log_error("The two new PINs differ. Nothing was changed.");
                return EXIT_FAILED;
        }
        return 0;
}

int run_pin_change(const Options *opts, int argc, char **argv)
{
        _cleanup_(pins_wipe) Pins pins = {};
        _cleanup_(bus_view_done) BusView view = {};
        _cleanup_(p11_done) P11 p11 = { .session = CK_INVALID_HANDLE };
        const char *serial = NULL, *label = NULL, *module = NULL, *e;
        const TokenProps *bt = NULL;
        unsigned min_length;
        SlotToken tok;
        char what[128], name[64];
        CK_RV rv;
        int r;

        if (argc > 2) {
                log_error("'pin change' takes at most one token serial; see 'kysoctl pin change --help'.");
                return EXIT_USAGE;
        }
        if (argc == 2)
                serial = argv[1];
        for (size_t i = 0; i < opts->n_cmd_options; i++)
                switch (opts->cmd_options[i].id) {
                case OPT_LABEL:
                        label = opts->cmd_options[i].arg;
                        break;
                case OPT_MODULE:
                        module = opts->cmd_options[i].arg;
                        break;
                }
        if (serial && label) {
                log_error("Give a token serial or --label, not both.");
                return EXIT_USAGE;
        }
        if ((serial && (!*serial || !utf8_valid(serial))) || (label && (!*label || !utf8_valid(label)))) {
                log_error("'%s' is not a token %s; 'kysoctl pin status' lists your tokens.",
                          serial ? serial : label, serial ? "serial" : "label");
                return EXIT_USAGE;
        }
        if (module && !*module) {
                log_error("--module needs the path of kyso-pkcs11.so.");
                return EXIT_USAGE;
        }
        if (!module) {
                e = getenv("KYSO_MODULE");
                module = e && *e ? e : P11_MODULE_PATH "/" KYSO_P11_MODULE_NAME;
        }

        /* Before anything is typed: which token, and its PIN rules, as far as the bus knows. */
        bus_view_get(&view);
        bt = bus_view_find(&view, serial, label);
        if (!serial && !label && view.bus) {
                size_t present = 0;

                for (size_t i = 0; i < view.n; i++)
                        if (view.tokens[i].present) {
                                present++;
                                bt = &view.tokens[i];
                        }
                if (present > 1) {
                        log_error("%zu tokens are plugged in: say which one, as 'kysoctl pin change SERIAL' "
                                  "('kysoctl pin status' lists yours).",
                                  present);
                        return EXIT_USAGE;
                }
        }
        if (serial && bt && !bt->present) {
                log_error("Token %s is not plugged in: plug it in and try again.", serial);
                return EXIT_NO_TOKEN;
        }
        min_length = min_length_of(bt);
        what[0] = '\0';
        if (bt && bt->serial) {
                _cleanup_(freep) char *s = text_sanitize(bt->serial);
                _cleanup_(freep) char *l = text_sanitize(str_or(bt->label, ""));

                snprintf(what, sizeof(what), " of token %s%s%s%s", s ? s : "?", l && *l ? " \"" : "",
                         l ? l : "", l && *l ? "\"" : "");
                if (bt->pin_state && streq(bt->pin_state, "final-try"))
                        fprintf(stderr, "Careful: one more wrong PIN locks this token. If you are not sure "
                                        "of the current PIN, stop (Ctrl-C) and ask the IT department.\n");
        }

        /* PINs stay out of swap and core dumps. */
        pins.locked = mlock(&pins, sizeof(pins)) == 0;
        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

        r = read_pins(&pins, what);
        if (r != 0)
                return r;
        r = check_quality(&pins, min_length);
        if (r != 0)
                return r;

        /* The module reads the socket from KYSO_SOCKET: kysoctl's --socket counts for it too. */
        if (setenv("KYSO_SOCKET", opts->socket_path, 1) < 0)
                return log_oom(), EXIT_FAILED;
        r = p11_load(&p11, module, opts->socket_path);
        if (r != 0)
                return r;
        r = p11_find_token(&p11, serial, label, &tok);
        if (r != 0)
                return r;
        /* Without a serial the bus may have meant another token, or none: check with this one's rules. */
        if (!bt || !bt->serial || !streq(bt->serial, tok.serial)) {
                unsigned m = min_length_of(bus_view_find(&view, tok.serial, NULL));

                if (m > min_length) {
                        r = check_quality(&pins, m);
                        if (r != 0)
                                return r;
                }
                min_length = m > min_length ? m : min_length;
        }

        rv = p11.f->C_OpenSession(tok.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p11.session);
        if (rv != CKR_OK) {
                p11.session = CK_INVALID_HANDLE;
                if (rv == CKR_TOKEN_NOT_RECOGNIZED)
                        return set_pin_result(&p11, &tok, rv, min_length);
                log_error("Cannot open a session on token %s: %s. Nothing was changed.", tok.serial,
                          ckr_name(rv, name, sizeof(name)));
                return rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED ? EXIT_NO_TOKEN : EXIT_FAILED;
        }
        rv = p11.f->C_SetPIN(p11.session, (CK_UTF8CHAR_PTR) pins.old, pins.old_len,
                             (CK_UTF8CHAR_PTR) pins.new, pins.new_len);
        pins_wipe(&pins);
        r = set_pin_result(&p11, &tok, rv, min_length);
        if (r != EXIT_OK)
                return r;
        if (!opts->json)
                printf("The PIN of token %s is changed. Use the new PIN from now on.\n", tok.serial);
        return output_flush();
}
