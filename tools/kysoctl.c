/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysoctl: the command-line tool for users and IT staff. Each command is
 * one entry of the command table below; a command gets the parsed options
 * (kysoctl's and its own) and its arguments and returns an exit status
 * (kysoctl.h, documented in kysoctl(1)). A command's name is one word, or
 * two for the commands of a group ("pin status", "pin change", "audit
 * verify"). The commands that talk to kysod over D-Bus live in
 * kysoctl-custody.c, kysoctl-registry.c, kysoctl-pin.c and kysoctl-audit.c;
 * "pin change" reaches the token through kyso-pkcs11.so.
 *
 * Commands that talk to kysod over its PKCS#11 socket make one blocking
 * request/reply exchange at a time, so the client here is deliberately
 * small: connect, HELLO, then a call. Frames are built and parsed only by
 * common/wire.c; this file only moves bytes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "kysoctl-audit.h"
#include "kysoctl-custody.h"
#include "kysoctl-monitor.h"
#include "kysoctl-pin.h"
#include "kysoctl-util.h"
#include "kysoctl.h"
#include "log.h"
#include "macro.h"
#include "wire.h"

/* A stuck daemon must not hang a shell script forever. */
#define KYSOCTL_IO_TIMEOUT_SEC 10
#define KYSOCTL_STATUS_INITIAL (1024U * 1024U)

typedef struct Command {
        const char *name;
        const char *args;    /* synopsis of the command's own arguments, "" if none */
        const char *summary; /* one line for the command list */
        const char *help;    /* the rest of "kysoctl COMMAND --help" */
        int (*run)(const Options *opts, int argc, char **argv);
        const struct option *options; /* the command's own options, or NULL */
        const char *shortopts;        /* their short forms, or NULL */
} Command;

static const Command *command_find(const char *name);
static void command_help(const Command *c);

/* ------------------------------------------------------------------------- */
/* The client: one connection, one request and one reply at a time.          */

typedef struct Client {
        int fd;
        uint32_t serial;
        const char *socket_path;
} Client;

static void client_done(Client *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

static int read_all(int fd, uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t k = recv(fd, p, n, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? -ETIMEDOUT : negative_errno();
                }
                if (k == 0)
                        return -ECONNRESET; /* the daemon closed the connection */
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Returns 0 and the CK_RV of the call, or -errno for a transport or protocol failure. */
static int client_call(Client *c, WireCall call, WireArg *args, CK_RV *ret_rv)
{
        _cleanup_(freep) uint8_t *payload = NULL;
        uint8_t header[KYSO_WIRE_HEADER_SIZE];
        uint32_t serial = ++c->serial, got_serial, got_call;
        size_t len;
        Buffer out;
        int r;

        buffer_init(&out, KYSO_WIRE_HEADER_SIZE + KYSO_WIRE_FRAME_MAX);
        r = wire_encode_request(&out, serial, call, args);
        if (r >= 0 && !buffer_ok(&out))
                r = -ENOMEM;
        if (r >= 0)
                r = write_full(c->fd, out.data, out.len);
        buffer_done(&out);
        if (r < 0)
                return r;

        r = read_all(c->fd, header, sizeof(header));
        if (r < 0)
                return r;
        r = wire_frame_length(header, &len);
        if (r < 0)
                return r;
        payload = malloc(len);
        if (!payload)
                return -ENOMEM;
        r = read_all(c->fd, payload, len);
        if (r < 0)
                return r;
        r = wire_peek(payload, len, &got_serial, &got_call);
        if (r < 0)
                return r;
        if (got_serial != serial || got_call != (uint32_t) call)
                return -EBADMSG;
        return wire_decode_reply(payload, len, call, args, ret_rv);
}

/* Logs what went wrong once, here, in words a user can act on. */
static int client_connect(Client *c, const char *path)
{
        _cleanup_(closep) int fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = KYSOCTL_IO_TIMEOUT_SEC };
        CK_ULONG server_version = 0, server_flags = 0;
        WireArg hello[5] = {
                { .value = KYSO_WIRE_MAGIC },
                { .value = KYSO_WIRE_VERSION },
                { .value = 1 }, /* handle base: kysoctl opens no sessions, any base will do */
                { .ptr = &server_version },
                { .ptr = &server_flags },
        };
        CK_RV rv = CKR_OK;
        int r;

        c->fd = -1;
        c->serial = 0;
        c->socket_path = path;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "Socket path too long: %s", path);
        memcpy(sa.sun_path, path, strlen(path) + 1);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create a socket: %m");
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

        if (connect(fd, (const struct sockaddr *) &sa, sizeof(sa)) < 0) {
                char how[PATH_MAX + 32];

                r = errno;
                /* The system daemon is started by systemd; one on another socket is a development daemon. */
                if (streq(path, KYSO_SOCKET_DEFAULT))
                        snprintf(how, sizeof(how), "'systemctl start kysod'");
                else
                        snprintf(how, sizeof(how), "'kysod --socket %s'", path);

                if (r == ENOENT || r == ENOTDIR)
                        return log_error_errno(r,
                                               "kysod is not running (no socket at %s): start it with %s.",
                                               path, how);
                if (r == ECONNREFUSED)
                        return log_error_errno(r,
                                               "kysod is not running (nothing listens on %s, "
                                               "a stale socket): start it with %s.",
                                               path, how);
                if (r == EACCES || r == EPERM)
                        return log_error_errno(r, "Permission denied connecting to kysod at %s.", path);
                return log_error_errno(r, "Failed to connect to kysod at %s: %m", path);
        }
        c->fd = TAKE_FD(fd);

        r = client_call(c, KYSO_CALL_HELLO, hello, &rv);
        if (r < 0) {
                client_done(c);
                return log_error_errno(r, "kysod at %s did not complete the handshake: %m", path);
        }
        if (rv != CKR_OK) {
                client_done(c);
                return log_error_errno(EPROTO, "kysod at %s refused the handshake (CK_RV 0x%08lx).", path,
                                       (unsigned long) rv);
        }
        return 0;
}

/*
 * Fetches an 'o' output (a byte string with PKCS#11 length semantics):
 * starts with a buffer of `initial` bytes and grows it when the daemon
 * answers CKR_BUFFER_TOO_SMALL, since the value may grow between calls.
 */
static int client_call_output(Client *c, WireCall call, size_t initial, char **ret, size_t *ret_len)
{
        _cleanup_(freep) char *data = NULL;
        size_t cap = initial;
        CK_RV rv = CKR_OK;
        int r;

        for (unsigned attempt = 0; attempt < 4; attempt++) {
                CK_ULONG len = cap;
                WireArg args[1] = { { .ptr = NULL, .len_ptr = &len } };
                char *p;

                p = realloc(data, cap + 1);
                if (!p)
                        return log_oom();
                data = p;
                args[0].ptr = data;

                r = client_call(c, call, args, &rv);
                if (r < 0)
                        return log_error_errno(r, "Lost the connection to kysod at %s: %m", c->socket_path);
                if (rv == CKR_OK) {
                        if (len > cap)
                                return log_error_errno(EBADMSG, "kysod sent more than it was asked for.");
                        data[len] = '\0';
                        *ret_len = len;
                        *ret = TAKE_PTR(data);
                        return 0;
                }
                if (rv != CKR_BUFFER_TOO_SMALL || len <= cap || len > KYSO_WIRE_FRAME_MAX)
                        break;
                cap = len + len / 4; /* some headroom in case it grows again */
        }
        return log_error_errno(EIO, "kysod failed the %s request (CK_RV 0x%08lx).",
                               wire_call_info(call)->name, (unsigned long) rv);
}

/* ------------------------------------------------------------------------- */
/* status                                                                     */

static const char *json_str(json_object *o, const char *key, const char *fallback)
{
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return fallback;
        return json_object_get_string(v);
}

static bool json_int(json_object *o, const char *key, int64_t *ret)
{
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return true;
}

/* A boolean field: 1 true, 0 false, -1 absent (an older or newer daemon). */
static int json_flag(json_object *o, const char *key)
{
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
                return -1;
        return json_object_get_boolean(v);
}

static json_object *json_array(json_object *o, const char *key)
{
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
                return NULL;
        return v;
}

static json_object *json_obj(json_object *o, const char *key)
{
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_object))
                return NULL;
        return v;
}

static void print_flags(const char *indent, json_object *flags)
{
        size_t n = flags ? json_object_array_length(flags) : 0;

        if (n == 0)
                return;
        printf("%sflags: ", indent);
        for (size_t i = 0; i < n; i++) {
                json_object *f = json_object_array_get_idx(flags, i);
                bool is_str = json_object_is_type(f, json_type_string);

                printf("%s%s", i ? ", " : "", is_str ? json_object_get_string(f) : "?");
        }
        printf("\n");
}

static void format_duration(int64_t s, char *buf, size_t size)
{
        int64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;

        if (s < 0)
                snprintf(buf, size, "?");
        else if (d > 0)
                snprintf(buf, size, "%" PRId64 "d %" PRId64 "h %" PRId64 "min", d, h, m);
        else if (h > 0)
                snprintf(buf, size, "%" PRId64 "h %" PRId64 "min %" PRId64 "s", h, m, sec);
        else if (m > 0)
                snprintf(buf, size, "%" PRId64 "min %" PRId64 "s", m, sec);
        else
                snprintf(buf, size, "%" PRId64 "s", sec);
}

static const char *or_dash(const char *s)
{
        return *s ? s : "-";
}

static const char *plural(int64_t n, const char *one, const char *many)
{
        return n == 1 ? one : many;
}

static void print_status(json_object *st)
{
        json_object *backends = json_array(st, "backends"), *slots = json_array(st, "slots");
        json_object *clients = json_obj(st, "clients"), *caller = json_obj(st, "caller");
        int64_t pid = -1, uptime = -1, n, m;
        char up[64];

        json_int(st, "pid", &pid);
        json_int(st, "uptime_seconds", &uptime);
        format_duration(uptime, up, sizeof(up));

        printf("kysod %s, pid %" PRId64 ", up %s\n", json_str(st, "version", "?"), pid, up);
        printf("  socket:    %s\n", json_str(st, "socket", "?"));
        printf("  state dir: %s\n", json_str(st, "state_dir", "?"));
        if (clients && json_int(clients, "connected", &n) && json_int(clients, "sessions", &m))
                printf("  clients:   %" PRId64 " connected, %" PRId64 " open %s\n", n, m,
                       plural(m, "session", "sessions"));
        if (caller && json_int(caller, "sessions", &n))
                printf("  you:       %" PRId64 " open %s\n", n, plural(n, "session", "sessions"));

        n = backends ? (int64_t) json_object_array_length(backends) : 0;
        printf("\nBackends (%" PRId64 "):\n", n);
        if (n == 0)
                printf("  none: kysod loaded no PKCS#11 module (see 'module =' in kysod.conf(5))\n");
        for (int64_t i = 0; i < n; i++) {
                json_object *b = json_object_array_get_idx(backends, (size_t) i);
                int64_t idx = i, nslots = -1;

                json_int(b, "index", &idx);
                json_int(b, "slots", &nslots);
                printf("  [%" PRId64 "] %s\n", idx, json_str(b, "path", "?"));
                printf("      %s: %s, library %s, Cryptoki %s", json_str(b, "manufacturer", "?"),
                       json_str(b, "description", "?"), json_str(b, "library_version", "?"),
                       json_str(b, "cryptoki_version", "?"));
                if (nslots >= 0)
                        printf(", %" PRId64 " %s", nslots, plural(nslots, "slot", "slots"));
                if (json_flag(b, "interface_3_0") > 0)
                        printf(", PKCS#11 3.0 interface");
                printf("\n");
        }

        n = slots ? (int64_t) json_object_array_length(slots) : 0;
        printf("\nSlots (%" PRId64 "):\n", n);
        for (int64_t i = 0; i < n; i++) {
                json_object *s = json_object_array_get_idx(slots, (size_t) i);
                json_object *tok = json_obj(s, "token");
                int64_t id = -1, backend = -1;
                const char *label;

                json_int(s, "id", &id);
                json_int(s, "backend", &backend);
                printf("  slot %" PRId64 " (backend %" PRId64 "): %s%s\n", id, backend,
                       json_str(s, "description", "?"),
                       json_flag(s, "serialized") > 0 ? " [calls serialised]" : "");
                print_flags("      slot ", json_array(s, "flags"));
                if (!tok) {
                        printf("      no token\n");
                        continue;
                }
                label = json_str(tok, "label", "?");
                if (*label)
                        printf("      token \"%s\"", label);
                else
                        printf("      token without a label");
                printf(", serial %s, %s %s\n", or_dash(json_str(tok, "serial", "?")),
                       or_dash(json_str(tok, "manufacturer", "?")), or_dash(json_str(tok, "model", "?")));
                print_flags("      token ", json_array(tok, "flags"));
                if (json_int(tok, "clients_logged_in", &m) && m > 0)
                        printf("      %" PRId64 " %s logged in\n", m, plural(m, "client", "clients"));
        }
}

static int run_status(const Options *opts, int argc, char **argv)
{
        _cleanup_(freep) char *text = NULL;
        json_object *st;
        Client client;
        size_t len = 0;
        int r;

        if (argc > 1) {
                log_error("'status' takes no arguments; see 'kysoctl status --help'.");
                return EXIT_USAGE;
        }

        r = client_connect(&client, opts->socket_path);
        if (r < 0)
                return EXIT_FAILED;
        r = client_call_output(&client, KYSO_CALL_DAEMON_STATUS, KYSOCTL_STATUS_INITIAL, &text, &len);
        client_done(&client);
        if (r < 0)
                return EXIT_FAILED;

        st = json_tokener_parse(text);
        if (!st || !json_object_is_type(st, json_type_object)) {
                json_object_put(st);
                log_error("kysod sent a status that is not a JSON object.");
                return EXIT_FAILED;
        }
        if (opts->json)
                printf("%s\n", json_object_to_json_string_ext(st, JSON_C_TO_STRING_PRETTY |
                                                                          JSON_C_TO_STRING_SPACED |
                                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
        else {
                int64_t pid = -1;

                print_status(st);
                /* The socket has answered; the bus adds custody when it can, and is silent when not. */
                json_int(st, "pid", &pid);
                custody_print_summary(pid);
        }
        json_object_put(st);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
}

/* ------------------------------------------------------------------------- */
/* help                                                                       */

static int run_help(const Options *opts, int argc, char **argv);

#define CHANGE_NEEDS_ADMIN "Needs root or membership in kysod's admin group.\n"
#define STATE_CHANGE_OPTIONS                                                                               \
        "\n"                                                                                               \
        "  --reason TEXT   why, for the record (free text)\n"

static const Command commands[] = {
        {
                .name = "status",
                .args = "",
                .summary = "Show the daemon, its backends, slots and tokens",
                .help = "Connects to kysod and prints its version, process id, uptime, the PKCS#11\n"
                        "modules it loaded (backends), every slot with its token (label, serial,\n"
                        "flags), and how many clients and sessions it serves. When the same kysod\n"
                        "also answers on the system D-Bus, a custody summary follows: the policy for\n"
                        "unknown tokens, the admin group and the number of tokens in each state.\n"
                        "With --json, prints the daemon's status document as it is. Exits with 1 if\n"
                        "kysod cannot be reached.\n",
                .run = run_status,
        },
        {
                .name = "monitor",
                .args = "",
                .summary = "Print kysod's events as they happen",
                .help = "Listens to kysod on the system D-Bus and prints each event on one line: a token\n"
                        "inserted or removed, a USB token device plugged in or pulled out, a refusal\n"
                        "(AccessDenied), a PIN expiring, expired or locked, a token's properties\n"
                        "changing. With --json, one JSON object a line (time, event and the event's\n"
                        "fields). Runs until interrupted (Ctrl-C); open to every user.\n",
                .run = run_monitor,
        },
        {
                .name = "tokens",
                .args = "",
                .summary = "List every token kysod knows, with its custody",
                .help = "Lists every token kysod has seen or holds a custody record for: serial,\n"
                        "label, whether it is plugged in, custody state (unassigned, active, lost,\n"
                        "revoked, returned, locked), kind, holder, and the last day of validity (in\n"
                        "local time). With --json, prints an array of objects with every property.\n"
                        "Asks kysod over the system D-Bus; open to every user.\n",
                .run = run_tokens,
        },
        {
                .name = "token",
                .args = "SERIAL",
                .summary = "Show one token in detail, with its handovers",
                .help = "Prints what kysod knows of the token with serial SERIAL: label, maker,\n"
                        "model, whether it is plugged in, when it was first and last seen, its custody\n"
                        "record (state and why, kind, holder, organisation, decision, validity,\n"
                        "whether a PIN change is due), its PIN (state, last change, due date) and its\n"
                        "handovers, oldest first. With --json, one object as in 'kysoctl --json\n"
                        "tokens'. Exits with 4 if kysod knows no such token.\n",
                .run = run_token,
        },
        {
                .name = "assign",
                .args = "SERIAL --kind KIND --holder HOLDER --decision REF --decision-date DATE [...]",
                .summary = "Record who holds a token, by which decision",
                .help = "Records a new custody decision for the token SERIAL: who holds it, by which\n"
                        "written decision, for how long. The token need not be plugged in. kysod\n"
                        "refuses when the token's current record is active, lost or locked: use\n"
                        "'handover' or 'return' first.\n" CHANGE_NEEDS_ADMIN
                        "\n"
                        "  --kind KIND            organization, personal or device (required)\n"
                        "  --holder HOLDER        a local user, or @GROUP for a local group (required)\n"
                        "  --decision REF         the written decision's number, e.g. 12/QĐ-UBND\n"
                        "                         (required)\n"
                        "  --decision-date DATE   the decision's date, YYYY-MM-DD (required)\n"
                        "  --signed-by NAME       who signed the decision\n"
                        "  --org NAME             the organisation the token belongs to\n"
                        "  --from TIME            start of validity (default: now)\n"
                        "  --until TIME           end of validity (default: none)\n"
                        "  --pin-change-required  the holder must change the PIN before signing\n"
                        "\n"
                        "TIME is YYYY-MM-DD (for --from the start of that day, for --until its end),\n"
                        "YYYY-MM-DDTHH:MM[:SS], both in local time, or @UNIXSECONDS.\n",
                .run = run_assign,
                .options = custody_assign_options,
        },
        {
                .name = "handover",
                .args = "SERIAL --to HOLDER --minutes REF [--no-pin-change]",
                .summary = "Hand an active token over to a new holder",
                .help = "Makes HOLDER the holder of the active token SERIAL and records the handover\n"
                        "minutes. Unless kysod.conf says otherwise, the new holder must change the PIN\n"
                        "before signing.\n" CHANGE_NEEDS_ADMIN
                        "\n"
                        "  --to HOLDER      the new holder: a local user, or @GROUP (required)\n"
                        "  --minutes REF    the handover minutes' reference (required)\n"
                        "  --no-pin-change  do not require a PIN change from the new holder\n",
                .run = run_handover,
                .options = custody_handover_options,
        },
        {
                .name = "report-lost",
                .args = "SERIAL [--reason TEXT]",
                .summary = "Record that a token is lost",
                .help = "Marks the custody of token SERIAL as lost. kysod refuses the token at once,\n"
                        "also to sessions already open.\n" CHANGE_NEEDS_ADMIN STATE_CHANGE_OPTIONS,
                .run = run_report_lost,
                .options = custody_reason_options,
        },
        {
                .name = "revoke",
                .args = "SERIAL [--reason TEXT]",
                .summary = "Revoke a token's custody",
                .help = "Marks the custody of token SERIAL as revoked. kysod refuses the token at\n"
                        "once, also to sessions already open; 'assign' may then record a new holder.\n"
                        CHANGE_NEEDS_ADMIN STATE_CHANGE_OPTIONS,
                .run = run_revoke,
                .options = custody_reason_options,
        },
        {
                .name = "return",
                .args = "SERIAL [--reason TEXT]",
                .summary = "Record that a token was handed back",
                .help = "Marks the custody of token SERIAL as returned: the holder gave it back.\n"
                        "kysod refuses the token at once, also to sessions already open; 'assign'\n"
                        "may then record a new holder.\n" CHANGE_NEEDS_ADMIN STATE_CHANGE_OPTIONS,
                .run = run_return,
                .options = custody_reason_options,
        },
        {
                .name = "export",
                .args = "[-o FILE]",
                .summary = "Write the custody registry as JSON",
                .help = "Prints kysod's custody registry (every token's current record) as JSON, in\n"
                        "the format 'kysoctl import' reads. A FILE is written whole or not at all\n"
                        "(through FILE.tmp). Open to every user.\n"
                        "\n"
                        "  -o, --output FILE  write to FILE instead of standard output (- for it)\n",
                .run = run_export,
                .options = custody_export_options,
                .shortopts = CUSTODY_EXPORT_SHORTOPTS,
        },
        {
                .name = "import",
                .args = "FILE",
                .summary = "Add custody records from a JSON registry",
                .help = "Reads a registry in the format of 'kysoctl export' from FILE (- for standard\n"
                        "input), checks that it is JSON, and sends it to kysod, which checks every\n"
                        "record before it changes anything: all new records are added, or none.\n"
                        "Records equal to a token's current one are skipped. Prints how many were\n"
                        "added (with --json: {\"added\": N}).\n" CHANGE_NEEDS_ADMIN,
                .run = run_import,
        },
        {
                .name = "pin status",
                .args = "[--all]",
                .summary = "Show your tokens' PINs: last change, due date, state",
                .help = "Lists the tokens you hold (as their holder, or through a @GROUP you are in)\n"
                        "with the last PIN change kysod saw, the date the PIN is due, and its state:\n"
                        "ok, expiring (due soon), change-required (after a handover), expired, or what\n"
                        "the token reports: count-low, final-try, locked. Below the table it says what\n"
                        "to do about each of your tokens that needs something. Root and the admin group\n"
                        "see every token. With --json, an array of objects (serial, label, kind, holder,\n"
                        "present, pin_changed_at, pin_due_at, pin_state, pin_mode, pin_min_length). Asks\n"
                        "kysod over the system D-Bus; open to every user.\n"
                        "\n"
                        "  --all   every token kysod knows, not only yours\n",
                .run = run_pin_status,
                .options = pin_status_options,
        },
        {
                .name = "pin change",
                .args = "[SERIAL|--label LABEL] [--module PATH]",
                .summary = "Change a token's user PIN",
                .help = "Asks for the current PIN and twice for the new one, without echo, on the\n"
                        "terminal; without one (a script, a test) it reads them as three lines from\n"
                        "standard input. The new PIN is checked here first with kysod's rules (at least\n"
                        "the token's minimum length, 8 unless kysod says otherwise; not one character\n"
                        "repeated, not a run like 12345678, not a common PIN, not the old PIN): a PIN\n"
                        "that fails is refused before the token sees anything. Then the PIN is changed\n"
                        "through kyso-pkcs11.so and kysod (C_SetPIN), which checks custody and the rules\n"
                        "again and records the change. Without SERIAL or --label, the only token plugged\n"
                        "in is used. A wrong current PIN uses up one of the token's tries: see 'kysoctl\n"
                        "pin status'.\n"
                        "\n"
                        "  --label LABEL  the token with this label, instead of its SERIAL\n"
                        "  --module PATH  the PKCS#11 module (default: $KYSO_MODULE, else\n"
                        "                 " P11_MODULE_PATH "/" KYSO_P11_MODULE_NAME ")\n"
                        "\n"
                        "Exit status 3: you are not the token's holder; 4: no such token plugged in.\n",
                .run = run_pin_change,
                .options = pin_change_options,
        },
        {
                .name = "audit",
                .args = "[--since DATE] [--until DATE] [--token SERIAL] [--user USER] [--event EVENT] "
                        "[--limit N]",
                .summary = "Show kysod's audit records",
                .help = "Prints kysod's audit records, oldest first, as a table: time (local), user,\n"
                        "event, token, key, mechanism, result. With --json, the records as kysod sends\n"
                        "them (also pid, exe, detail and the hash chain). Root and the admin group see\n"
                        "every record; any other user sees only their own records, whatever the filter.\n"
                        "\n"
                        "  --since DATE     records from DATE on\n"
                        "  --until DATE     records before the end of DATE\n"
                        "  --token SERIAL   records of one token\n"
                        "  --user USER      records of one user (a name, or a uid)\n"
                        "  --event EVENT    login, logout, sign, decrypt, unwrap, pin-change, pin-init,\n"
                        "                   custody, handover or refused\n"
                        "  --limit N        only the newest N records\n"
                        "\n"
                        "DATE is YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (local time) or @UNIXSECONDS.\n",
                .run = run_audit,
                .options = audit_options,
        },
        {
                .name = "audit verify",
                .args = "",
                .summary = "Check that the audit log is intact",
                .help = "Asks kysod to walk the audit log's hash chain. Prints \"Audit log intact: N\n"
                        "records checked.\" and exits 0, or \"Audit log BROKEN at record N: why\" and\n"
                        "exits 1. With --json, {\"intact\", \"checked\", \"first_bad_id\", \"reason\"}.\n"
                        CHANGE_NEEDS_ADMIN,
                .run = run_audit_verify,
        },
        {
                .name = "report",
                .args = "--format csv|json [--since DATE] [--until DATE] [-o FILE]",
                .summary = "Write the subscriber report (tokens, holders, PINs, signatures)",
                .help = "Writes kysod's report of every token: custody (holder, decision, state,\n"
                        "validity), PIN age and state, certificates, when it was first and last seen,\n"
                        "and how many signatures it made in the period. json is kysod's document,\n"
                        "pretty-printed; csv is one row per token for a spreadsheet (UTF-8 with a\n"
                        "byte order mark, RFC 4180 quoting, CRLF, times as YYYY-MM-DD HH:MM:SS local\n"
                        "time). A FILE is written whole or not at all (through FILE.tmp).\n"
                        CHANGE_NEEDS_ADMIN
                        "\n"
                        "  --format FORMAT    csv or json (required; --json means json)\n"
                        "  --since DATE       count signatures from DATE on (default: from the start)\n"
                        "  --until DATE       ... up to the end of DATE (default: to now)\n"
                        "  -o, --output FILE  write to FILE instead of standard output (- for it)\n",
                .run = run_report,
                .options = report_options,
                .shortopts = REPORT_SHORTOPTS,
        },
        {
                .name = "help",
                .args = "[COMMAND]",
                .summary = "Show help for kysoctl or for one command",
                .help = "Prints the list of commands, or the help of COMMAND.\n",
                .run = run_help,
        },
};

static const Command *command_find(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(commands[i].name, name))
                        return &commands[i];
        return NULL;
}

/* Whether word names a group of commands ("pin" of "pin status" and "pin change"). */
static bool command_group(const char *word)
{
        size_t n = strlen(word);

        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strncmp(commands[i].name, word, n) == 0 && commands[i].name[n] == ' ')
                        return true;
        return false;
}

/* The command named at argv[0] (and argv[1], for a group's command); *ret_words: how many words. */
static const Command *command_lookup(int argc, char **argv, int *ret_words)
{
        const Command *c = NULL;

        if (argc > 1 && command_group(argv[0])) {
                char name[64];

                snprintf(name, sizeof(name), "%s %s", argv[0], argv[1]);
                c = command_find(name);
        }
        *ret_words = c ? 2 : 1;
        return c ? c : command_find(argv[0]);
}

/* "kysoctl pin" alone, or with --help: its commands. */
static void group_help(const char *word)
{
        size_t n = strlen(word);

        printf("Commands of 'kysoctl %s':\n", word);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strncmp(commands[i].name, word, n) == 0 &&
                    (!commands[i].name[n] || commands[i].name[n] == ' '))
                        printf("  %-14s  %s\n", commands[i].name, commands[i].summary);
        printf("\nSee 'kysoctl %s COMMAND --help' for one of them.\n", word);
}

static int group_usage(const char *word)
{
        size_t n = strlen(word);
        char list[256] = "";

        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strncmp(commands[i].name, word, n) == 0 && commands[i].name[n] == ' ') {
                        if (*list)
                                strncat(list, ", ", sizeof(list) - strlen(list) - 1);
                        strncat(list, commands[i].name + n + 1, sizeof(list) - strlen(list) - 1);
                }
        log_error("'%s' needs one of: %s; see 'kysoctl %s --help'.", word, list, word);
        return EXIT_USAGE;
}

static void main_help(void)
{
        printf("Usage: kysoctl [OPTIONS] COMMAND [ARGS]\n"
               "\n"
               "Control and inspect kysod, the kyso PKCS#11 token daemon.\n"
               "\n"
               "Options:\n"
               "  -s, --socket PATH   kysod's socket (default: $KYSO_SOCKET, else %s)\n"
               "  -j, --json          print machine-readable JSON\n"
               "  -h, --help          show this help (or a command's, after the command)\n"
               "  -V, --version       show the version\n"
               "\n"
               "Commands:\n",
               KYSO_SOCKET_DEFAULT);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
                char synopsis[128];

                snprintf(synopsis, sizeof(synopsis), "%s %s", commands[i].name, commands[i].args);
                /* Long synopses are cut at the first option; the command's help has all of it. */
                if (strlen(synopsis) > 22) {
                        char *cut = strstr(synopsis, " -");

                        if (!cut)
                                cut = strstr(synopsis, " [-");
                        if (cut)
                                strcpy(cut, " ...");
                }
                if (strlen(synopsis) > 22)
                        printf("  %s\n  %-22s  %s\n", synopsis, "", commands[i].summary);
                else
                        printf("  %-22s  %s\n", synopsis, commands[i].summary);
        }
        printf("\n"
               "Exit status: 0 success, 1 kysod unreachable or the request refused or failed,\n"
               "2 usage error, 3 permission denied, 4 no such token. See kysoctl(1).\n");
}

static void command_help(const Command *c)
{
        printf("Usage: kysoctl [OPTIONS] %s%s%s\n\n%s\n%s\n", c->name, *c->args ? " " : "", c->args,
               c->summary, c->help);
        printf("kysoctl's own options (--json, --socket, ...): see 'kysoctl --help'.\n");
}

static int run_help(const Options *opts, int argc, char **argv)
{
        const Command *c;
        int words;

        if (argc < 2) {
                main_help();
                return EXIT_OK;
        }
        c = command_lookup(argc - 1, argv + 1, &words);
        if (!c && argc == 2 && command_group(argv[1])) {
                group_help(argv[1]);
                return EXIT_OK;
        }
        if (!c) {
                log_error("Unknown command '%s'; see 'kysoctl --help'.", argv[1]);
                return EXIT_USAGE;
        }
        if (argc > 1 + words) {
                log_error("'help' takes one command name.");
                return EXIT_USAGE;
        }
        command_help(c);
        return EXIT_OK;
}

/* ------------------------------------------------------------------------- */

static const struct option global_options[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
};
#define GLOBAL_SHORTOPTS "+s:jhV"

/* The option table of a command line: kysoctl's options, then those of cmd (if any). */
typedef struct OptionTable {
        struct option *longopts;
        char shortopts[32];
} OptionTable;

static int option_table_make(const Command *cmd, OptionTable *ret)
{
        size_t n = 0;

        while (cmd && cmd->options && cmd->options[n].name)
                n++;
        ret->longopts = calloc(ELEMENTSOF(global_options) + n + 1, sizeof(struct option));
        if (!ret->longopts)
                return -ENOMEM;
        memcpy(ret->longopts, global_options, sizeof(global_options));
        if (n > 0)
                memcpy(ret->longopts + ELEMENTSOF(global_options), cmd->options, n * sizeof(struct option));
        snprintf(ret->shortopts, sizeof(ret->shortopts), "%s%s", GLOBAL_SHORTOPTS,
                 cmd && cmd->shortopts ? cmd->shortopts : "");
        return 0;
}

/*
 * Options may stand before or after the command ("kysoctl --json status" and "kysoctl
 * status --json"); a command's own options only after it. Parsing stops at the first
 * non-option so that the command's arguments are never mistaken for options; main() then
 * parses the rest again. The command's own options are appended to cmd_opts (room for one
 * per argument). Returns 0, 1 for --version (done), -EINVAL.
 */
static int parse_options(int argc, char **argv, const OptionTable *table, Options *opts, bool *want_help,
                         CommandOption *cmd_opts, size_t *n_cmd_opts)
{
        int c;

        while ((c = getopt_long(argc, argv, table->shortopts, table->longopts, NULL)) >= 0) {
                switch (c) {
                case 's':
                        opts->socket_path = optarg;
                        break;
                case 'j':
                        opts->json = true;
                        break;
                case 'h':
                        *want_help = true;
                        break;
                case 'V':
                        printf("kysoctl %s\n", PACKAGE_VERSION);
                        return 1;
                case '?':
                case ':':
                        return -EINVAL;
                default:
                        cmd_opts[(*n_cmd_opts)++] = (CommandOption) { .id = c, .arg = optarg };
                        break;
                }
        }
        return 0;
}

int main(int argc, char **argv)
{
        _cleanup_(freep) char **cmd_argv = NULL;
        _cleanup_(freep) CommandOption *cmd_opts = NULL;
        _cleanup_(freep) struct option *longopts = NULL;
        Options opts = { .socket_path = NULL };
        OptionTable table = {};
        bool want_help = false;
        const Command *cmd = NULL;
        int cmd_argc = 0, sub_argc, words, r;
        size_t n_cmd_opts = 0;
        char **sub_argv;

        /* A daemon that hangs up mid-request is an error to report, not a reason to die. */
        signal(SIGPIPE, SIG_IGN);
        log_setup("kysoctl", LOG_INFO);
        /* Column widths of labels and holders in Vietnamese; numbers and times stay in C. */
        (void) setlocale(LC_CTYPE, "");

        r = option_table_make(NULL, &table);
        if (r < 0) {
                log_oom();
                return EXIT_FAILED;
        }
        longopts = table.longopts;
        r = parse_options(argc, argv, &table, &opts, &want_help, NULL, &n_cmd_opts);
        if (r != 0)
                goto options_done;

        if (optind >= argc) {
                if (want_help) {
                        main_help();
                        return EXIT_OK;
                }
                log_error("No command given; see 'kysoctl --help'.");
                return EXIT_USAGE;
        }

        cmd = command_lookup(argc - optind, argv + optind, &words);
        if (!cmd && command_group(argv[optind])) {
                for (int i = optind + 1; i < argc && !streq(argv[i], "--"); i++)
                        want_help = want_help || streq(argv[i], "-h") || streq(argv[i], "--help");
                if (want_help) {
                        group_help(argv[optind]);
                        return EXIT_OK;
                }
                return group_usage(argv[optind]);
        }
        if (!cmd) {
                log_error("Unknown command '%s'; see 'kysoctl --help'.", argv[optind]);
                return EXIT_USAGE;
        }
        optind += words - 1; /* the command's arguments start after its last word */

        /* The command's own arguments: options among them are taken out, the rest kept in order. */
        sub_argc = argc - optind;
        sub_argv = argv + optind;
        cmd_argv = calloc((size_t) sub_argc + 1, sizeof(char *));
        cmd_opts = calloc((size_t) sub_argc, sizeof(CommandOption));
        free(TAKE_PTR(longopts));
        if (!cmd_argv || !cmd_opts || option_table_make(cmd, &table) < 0) {
                log_oom();
                return EXIT_FAILED;
        }
        longopts = table.longopts;
        cmd_argv[cmd_argc++] = sub_argv[0];
        sub_argv[0] = argv[0]; /* getopt names the program in its messages */
        optind = 1;
        for (;;) {
                r = parse_options(sub_argc, sub_argv, &table, &opts, &want_help, cmd_opts, &n_cmd_opts);
                if (r != 0 || optind >= sub_argc)
                        break;
                if (streq(sub_argv[optind - 1], "--")) {
                        /* After "--" everything belongs to the command. */
                        while (optind < sub_argc)
                                cmd_argv[cmd_argc++] = sub_argv[optind++];
                        break;
                }
                cmd_argv[cmd_argc++] = sub_argv[optind++];
        }
        opts.cmd_options = cmd_opts;
        opts.n_cmd_options = n_cmd_opts;

options_done:
        if (r > 0)
                return EXIT_OK; /* --version */
        if (r < 0) {
                if (cmd)
                        fprintf(stderr, "See 'kysoctl %s --help'.\n", cmd->name);
                else
                        fprintf(stderr, "See 'kysoctl --help'.\n");
                return EXIT_USAGE;
        }

        if (!opts.socket_path) {
                const char *e = getenv("KYSO_SOCKET");
                opts.socket_path = e && *e ? e : KYSO_SOCKET_DEFAULT;
        }

        if (want_help) {
                command_help(cmd);
                return EXIT_OK;
        }
        return cmd->run(&opts, cmd_argc, cmd_argv);
}
