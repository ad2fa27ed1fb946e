/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The custody commands that read and change tokens' records, over the system
 * D-Bus (org.kyso1, data/org.kyso1.xml); export and import are in
 * kysoctl-registry.c, the bus plumbing in kysoctl-bus.c, the token objects'
 * properties in kysoctl-tokens.c, tables and JSON output in kysoctl-output.c.
 *
 * Every command opens the bus, makes one or two method calls and closes it.
 * What an administrator types is checked here before anything is sent, so a
 * typo gets a usage error naming the option instead of a round trip; kysod
 * checks everything again, as it must. Strings kysod sends are printed only
 * after text_sanitize(), since labels come from the tokens themselves.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <time.h>

#include "config.h"
#include "kysoctl-bus.h"
#include "kysoctl-custody.h"
#include "kysoctl-output.h"
#include "kysoctl-tokens.h"
#include "kysoctl-util.h"
#include "log.h"
#include "macro.h"

/* "kysoctl status" must stay quick even when kysod's bus side is stuck. */
#define SUMMARY_TIMEOUT_USEC (5U * 1000000U)

enum {
        OPT_KIND = 0x100,
        OPT_HOLDER,
        OPT_DECISION,
        OPT_DECISION_DATE,
        OPT_SIGNED_BY,
        OPT_ORG,
        OPT_FROM,
        OPT_UNTIL,
        OPT_PIN_CHANGE_REQUIRED,
        OPT_TO,
        OPT_MINUTES,
        OPT_NO_PIN_CHANGE,
        OPT_REASON,
};

const struct option custody_assign_options[] = {
        { "kind", required_argument, NULL, OPT_KIND },
        { "holder", required_argument, NULL, OPT_HOLDER },
        { "decision", required_argument, NULL, OPT_DECISION },
        { "decision-date", required_argument, NULL, OPT_DECISION_DATE },
        { "signed-by", required_argument, NULL, OPT_SIGNED_BY },
        { "org", required_argument, NULL, OPT_ORG },
        { "from", required_argument, NULL, OPT_FROM },
        { "until", required_argument, NULL, OPT_UNTIL },
        { "pin-change-required", no_argument, NULL, OPT_PIN_CHANGE_REQUIRED },
        {},
};

const struct option custody_handover_options[] = {
        { "to", required_argument, NULL, OPT_TO },
        { "minutes", required_argument, NULL, OPT_MINUTES },
        { "no-pin-change", no_argument, NULL, OPT_NO_PIN_CHANGE },
        {},
};

const struct option custody_reason_options[] = {
        { "reason", required_argument, NULL, OPT_REASON },
        {},
};

/* ------------------------------------------------------------------------- */
/* Output                                                                    */

static int print_token_table(const TokenProps *a, size_t n)
{
        static const char *const header[] = {
                "SERIAL", "LABEL", "PRESENT", "STATE", "KIND", "HOLDER", "VALID UNTIL",
        };
        Table table;

        if (n == 0) {
                printf("kysod knows no tokens yet: none has been inserted or assigned.\n");
                return EXIT_OK;
        }
        table_init(&table, header, ELEMENTSOF(header));
        for (size_t i = 0; i < n; i++) {
                const TokenProps *t = &a[i];
                char until[TIME_TEXT_MAX];

                table_add(&table, str_or(t->serial, "?"));
                table_add(&table, t->label);
                table_add(&table, t->present ? "yes" : "no");
                table_add(&table, str_or(t->state, "?"));
                table_add(&table, t->kind);
                table_add(&table, t->holder);
                table_add(&table, format_bound_local(t->valid_until, TIME_BOUND_END, until, sizeof(until)));
        }
        return table_print(&table);
}

/* "  label:  value" with the value made safe for the terminal. */
static void print_field(const char *label, const char *value)
{
        _cleanup_(freep) char *s = text_sanitize(value);

        printf("  %-20s %s\n", label, s ? s : "?");
}

static void print_token_detail(const TokenProps *t)
{
        _cleanup_(freep) char *serial = text_sanitize(str_or(t->serial, "?"));
        _cleanup_(freep) char *label = text_sanitize(str_or(t->label, ""));
        char buf[TIME_TEXT_MAX], buf2[TIME_TEXT_MAX], line[512];
        const char *state = str_or(t->state, "?");

        printf("Token %s%s%s%s\n", serial ? serial : "?", label && *label ? " \"" : "", label ? label : "",
               label && *label ? "\"" : "");
        print_field("manufacturer:", str_or(t->manufacturer, "-"));
        print_field("model:", str_or(t->model, "-"));
        if (t->present) {
                snprintf(line, sizeof(line), "yes, slot %" PRIu64, t->slot);
                print_field("present:", line);
        } else
                print_field("present:", "no");
        /* "-": kysod knows the token from a custody record only, it was never in a slot. */
        print_field("first seen:", format_time_local(t->first_seen, buf, sizeof(buf)));
        print_field("last seen:", format_time_local(t->last_seen, buf, sizeof(buf)));

        printf("\nCustody:\n");
        print_field("state:", state);
        if (t->state_reason && *t->state_reason)
                print_field("reason:", t->state_reason);
        if (streq(state, "unassigned")) {
                printf("  No custody record: assign the token with "
                       "'kysoctl assign %s --kind ... --holder ...'.\n",
                       serial ? serial : "SERIAL");
        } else {
                print_field("kind:", str_or(t->kind, "-"));
                print_field("holder:", str_or(t->holder, "-"));
                if (t->organization && *t->organization)
                        print_field("organization:", t->organization);
                snprintf(line, sizeof(line), "%s of %s", str_or(t->decision_number, "-"),
                         str_or(t->decision_date, "-"));
                print_field("decision:", line);
                if (t->decision_signer && *t->decision_signer)
                        print_field("signed by:", t->decision_signer);
                format_bound_local(t->valid_from, TIME_BOUND_START, buf, sizeof(buf));
                if (t->valid_until)
                        snprintf(line, sizeof(line), "from %s through %s", buf,
                                 format_bound_local(t->valid_until, TIME_BOUND_END, buf2, sizeof(buf2)));
                else
                        snprintf(line, sizeof(line), "from %s, no end", buf);
                print_field("valid:", line);
                print_field("PIN change required:",
                            t->pin_change_required ? "yes, before the next signature" : "no");
        }

        /* An older kysod sends no PIN properties: then the section is left out. */
        if (t->pin_state) {
                printf("\nPIN:\n");
                print_field("state:", t->pin_state);
                print_field("last change:", format_time_local(t->pin_changed_at, buf, sizeof(buf)));
                format_time_local(t->pin_due_at, buf, sizeof(buf));
                print_field("due:", t->pin_due_at ? buf : "now");
                if (t->pin_mode)
                        print_field("mode:", streq(t->pin_mode, "enforce") ? "enforce (overdue: no login)"
                                                                           : t->pin_mode);
        }

        printf("\nHandovers (%zu):\n", t->n_handovers);
        for (size_t i = 0; i < t->n_handovers; i++) {
                const HandoverEntry *h = &t->handovers[i];
                _cleanup_(freep) char *from = text_sanitize(h->from), *to = text_sanitize(h->to);
                _cleanup_(freep) char *minutes = text_sanitize(h->minutes);
                _cleanup_(freep) char *by = text_sanitize(h->recorded_by);

                printf("  %s  %s -> %s, minutes %s, recorded by %s\n",
                       format_time_local(h->time, buf, sizeof(buf)), from ? from : "?", to ? to : "?",
                       minutes ? minutes : "?", by ? by : "?");
        }
}

/* ------------------------------------------------------------------------- */
/* tokens, token                                                             */

int run_tokens(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        TokenProps *tokens = NULL;
        size_t n = 0;
        int r;

        if (argc > 1) {
                log_error("'tokens' takes no arguments (for one token: kysoctl token SERIAL).");
                return EXIT_USAGE;
        }
        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = managed_objects_call(bus, 0, true, &error, &reply);
        if (r < 0)
                return bus_failure(bus, r, &error, ACCESS_READ, "Cannot list the tokens kysod knows");
        r = tokens_parse(reply, &tokens, &n);
        if (r == -ENOMEM)
                return log_oom(), EXIT_FAILED;
        if (r < 0)
                return bus_reply_invalid(r);

        if (opts->json) {
                json_object *a = json_object_new_array();

                for (size_t i = 0; a && i < n; i++)
                        json_object_array_add(a, token_to_json(&tokens[i]));
                r = output_json(a);
        } else
                r = print_token_table(tokens, n);
        token_props_free(tokens, n);
        return r != EXIT_OK ? r : output_flush();
}

/* Checks a serial from the command line: exit status, or 0. */
static int check_serial(const char *command, int argc, char **argv)
{
        if (argc != 2) {
                log_error("'%s' needs exactly one token serial; see 'kysoctl %s --help'.", command, command);
                return EXIT_USAGE;
        }
        if (!*argv[1] || !utf8_valid(argv[1])) {
                log_error("'%s' is not a token serial; 'kysoctl tokens' lists them.", argv[1]);
                return EXIT_USAGE;
        }
        return 0;
}

int run_token(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *props = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        TokenProps t = {};
        const char *path;
        char what[256];
        int r;

        r = check_serial("token", argc, argv);
        if (r != 0)
                return r;
        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        snprintf(what, sizeof(what), "Cannot show token %s", argv[1]);

        r = sd_bus_call_method(bus, KYSO_BUS_NAME, KYSO_BUS_PATH, KYSO_MANAGER_IFACE, "GetToken", &error,
                               &reply, "s", argv[1]);
        if (r >= 0) {
                r = sd_bus_message_read(reply, "o", &path);
                if (r < 0)
                        return bus_reply_invalid(r);
                r = sd_bus_call_method(bus, KYSO_BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll",
                                       &error, &props, "s", KYSO_TOKEN_IFACE);
        }
        /* Gone between the two calls is as unknown as never there. */
        if (r < 0 && sd_bus_error_has_names(&error, KYSO_ERROR_NO_SUCH_TOKEN, SD_BUS_ERROR_UNKNOWN_OBJECT)) {
                log_error("No token with serial %s is known to kysod. Run 'kysoctl tokens' to list the "
                          "tokens it knows.",
                          argv[1]);
                return EXIT_NO_TOKEN;
        }
        if (r < 0)
                return bus_failure(bus, r, &error, ACCESS_READ, what);

        t.path = path;
        r = token_props_read(props, &t);
        if (r < 0) {
                token_props_done(&t);
                return r == -ENOMEM ? (log_oom(), EXIT_FAILED) : bus_reply_invalid(r);
        }
        if (opts->json)
                r = output_json(token_to_json(&t));
        else {
                print_token_detail(&t);
                r = EXIT_OK;
        }
        token_props_done(&t);
        return r != EXIT_OK ? r : output_flush();
}

/* ------------------------------------------------------------------------- */
/* assign, handover, report-lost, revoke, return                             */

/* A holder given to option: exit status, or 0 when it names a local user or group. */
static int check_holder(const char *option, const char *holder)
{
        const char *name;
        bool group;
        int err;

        if (holder_parse(holder, &name, &group) < 0) {
                log_error("%s '%s' is neither a user name nor @GROUP: a name is letters, digits, '_', '.', "
                          "'-' (and '@' after the first character), may end in '$', and is not only digits.",
                          option, holder);
                return EXIT_USAGE;
        }
        errno = 0;
        if (group ? !!getgrnam(name) : !!getpwnam(name))
                return 0;
        err = errno;
        /* Not found reads as 0, ENOENT, ESRCH, EBADF or EPERM depending on the NSS module. */
        if (err != 0 && err != ENOENT && err != ESRCH && err != EBADF && err != EPERM) {
                log_error_errno(err, "Cannot look up %s '%s': %m", group ? "group" : "user", name);
                return EXIT_FAILED;
        }
        if (group)
                log_error("%s: there is no group '%s' on this machine (see 'getent group %s'). Create it "
                          "first, or check the spelling.",
                          option, name, name);
        else
                log_error("%s: there is no user '%s' on this machine (see 'getent passwd %s'). A holder is "
                          "a local user name, or @GROUP for a group.",
                          option, name, name);
        return EXIT_USAGE;
}

int check_text(const char *option, const char *value, bool may_be_empty)
{
        if (!may_be_empty && !*value) {
                log_error("%s must not be empty.", option);
                return EXIT_USAGE;
        }
        if (!utf8_valid(value)) {
                log_error("%s is not valid UTF-8: check the terminal's character encoding (locale).",
                          option);
                return EXIT_USAGE;
        }
        return 0;
}

int check_time(const char *option, const char *value, TimeBound bound, int64_t *ret)
{
        int r = parse_time(value, bound, ret);

        if (r == -ERANGE) {
                log_error("%s %s is out of range: give a date after 1970.", option, value);
                return EXIT_USAGE;
        }
        if (r < 0) {
                log_error("%s %s is not a time: give YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (local time) or "
                          "@UNIXSECONDS.",
                          option, value);
                return EXIT_USAGE;
        }
        return 0;
}

static int missing(const char *command, const char *option, const char *what)
{
        log_error("'%s' needs %s %s; see 'kysoctl %s --help'.", command, option, what, command);
        return EXIT_USAGE;
}

#define APPEND_OPTION(m, r, key, sig, value)                                                               \
        do {                                                                                               \
                if ((r) >= 0)                                                                              \
                        (r) = sd_bus_message_append((m), "{sv}", (key), (sig), (value));                   \
        } while (0)

int run_assign(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *kind = NULL, *holder = NULL, *decision = NULL, *decision_date = NULL, *signed_by = NULL,
                   *org = NULL, *from_arg = NULL, *until_arg = NULL;
        int64_t from = 0, until = 0;
        bool pin_change = false;
        int y, mo, d, r;
        char what[256];

        r = check_serial("assign", argc, argv);
        if (r != 0)
                return r;
        for (size_t i = 0; i < opts->n_cmd_options; i++) {
                const char *a = opts->cmd_options[i].arg;

                switch (opts->cmd_options[i].id) {
                case OPT_KIND:
                        kind = a;
                        break;
                case OPT_HOLDER:
                        holder = a;
                        break;
                case OPT_DECISION:
                        decision = a;
                        break;
                case OPT_DECISION_DATE:
                        decision_date = a;
                        break;
                case OPT_SIGNED_BY:
                        signed_by = a;
                        break;
                case OPT_ORG:
                        org = a;
                        break;
                case OPT_FROM:
                        from_arg = a;
                        break;
                case OPT_UNTIL:
                        until_arg = a;
                        break;
                case OPT_PIN_CHANGE_REQUIRED:
                        pin_change = true;
                        break;
                }
        }

        if (!kind)
                return missing("assign", "--kind", "organization, personal or device");
        if (!custody_kind_valid(kind)) {
                log_error("--kind %s is not a custody kind: give organization, personal or device.", kind);
                return EXIT_USAGE;
        }
        if (!holder)
                return missing("assign", "--holder", "USER or @GROUP");
        if (!decision)
                return missing("assign", "--decision", "(the written decision's number, e.g. 12/QĐ-UBND)");
        if (!decision_date)
                return missing("assign", "--decision-date", "YYYY-MM-DD");
        if ((r = check_holder("--holder", holder)) != 0 ||
            (r = check_text("--decision", decision, false)) != 0 ||
            (signed_by && (r = check_text("--signed-by", signed_by, false)) != 0) ||
            (org && (r = check_text("--org", org, false)) != 0))
                return r;
        if (parse_date(decision_date, &y, &mo, &d) < 0) {
                log_error("--decision-date %s is not a date: give YYYY-MM-DD, as on the decision.",
                          decision_date);
                return EXIT_USAGE;
        }
        if ((from_arg && (r = check_time("--from", from_arg, TIME_BOUND_START, &from)) != 0) ||
            (until_arg && (r = check_time("--until", until_arg, TIME_BOUND_END, &until)) != 0))
                return r;
        r = validity_check(from, until, (int64_t) time(NULL));
        if (r == -EINVAL) {
                log_error("--until %s is not after --from %s: the custody would never be valid.", until_arg,
                          from_arg);
                return EXIT_USAGE;
        }
        if (r < 0) {
                log_error("--until %s is already past: the custody would never be valid.", until_arg);
                return EXIT_USAGE;
        }

        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = bus_manager_call_new(bus, "Assign", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "sssss", argv[1], kind, holder, decision, decision_date);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (signed_by)
                APPEND_OPTION(m, r, "signed_by", "s", signed_by);
        if (org)
                APPEND_OPTION(m, r, "organization", "s", org);
        if (from_arg)
                APPEND_OPTION(m, r, "valid_from", "x", from);
        if (until_arg)
                APPEND_OPTION(m, r, "valid_until", "x", until);
        if (pin_change)
                APPEND_OPTION(m, r, "pin_change_required", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return bus_build_failed(r);

        snprintf(what, sizeof(what), "Cannot assign token %s", argv[1]);
        r = bus_call(bus, m, ACCESS_CHANGE, what, &reply);
        if (r != 0)
                return r;
        if (!opts->json) {
                printf("Token %s is now held by %s (%s), by decision %s of %s.\n", argv[1], holder, kind,
                       decision, decision_date);
                if (pin_change)
                        printf("The holder must change the PIN before signing.\n");
        }
        return output_flush();
}

int run_handover(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const char *to = NULL, *minutes = NULL;
        bool no_pin_change = false;
        char what[256];
        int r;

        r = check_serial("handover", argc, argv);
        if (r != 0)
                return r;
        for (size_t i = 0; i < opts->n_cmd_options; i++)
                switch (opts->cmd_options[i].id) {
                case OPT_TO:
                        to = opts->cmd_options[i].arg;
                        break;
                case OPT_MINUTES:
                        minutes = opts->cmd_options[i].arg;
                        break;
                case OPT_NO_PIN_CHANGE:
                        no_pin_change = true;
                        break;
                }
        if (!to)
                return missing("handover", "--to", "USER or @GROUP");
        if (!minutes)
                return missing("handover", "--minutes", "(the handover minutes' reference)");
        if ((r = check_holder("--to", to)) != 0 || (r = check_text("--minutes", minutes, false)) != 0)
                return r;

        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = bus_manager_call_new(bus, "Handover", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "sss", argv[1], to, minutes);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        /* Without --no-pin-change the key stays out, so kysod.conf's default applies. */
        if (no_pin_change)
                APPEND_OPTION(m, r, "pin_change_required", "b", 0);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return bus_build_failed(r);

        snprintf(what, sizeof(what), "Cannot hand over token %s", argv[1]);
        r = bus_call(bus, m, ACCESS_CHANGE, what, NULL);
        if (r != 0)
                return r;
        if (!opts->json)
                printf("Token %s handed over to %s (minutes %s).\n", argv[1], to, minutes);
        return output_flush();
}

/* The messages read "<attempt> SERIAL<attempt_end>: why." and "Token SERIAL <done>". */
typedef struct StateChange {
        const char *command;
        const char *method;
        const char *attempt;
        const char *attempt_end;
        const char *done;
} StateChange;

static int run_state_change(const StateChange *sc, const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const char *reason = "";
        char what[256];
        int r;

        r = check_serial(sc->command, argc, argv);
        if (r != 0)
                return r;
        for (size_t i = 0; i < opts->n_cmd_options; i++)
                if (opts->cmd_options[i].id == OPT_REASON)
                        reason = opts->cmd_options[i].arg;
        r = check_text("--reason", reason, true);
        if (r != 0)
                return r;

        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = bus_manager_call_new(bus, sc->method, &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", argv[1], reason);
        if (r < 0)
                return bus_build_failed(r);

        snprintf(what, sizeof(what), "%s %s%s", sc->attempt, argv[1], sc->attempt_end);
        r = bus_call(bus, m, ACCESS_CHANGE, what, NULL);
        if (r != 0)
                return r;
        if (!opts->json)
                printf("Token %s %s\n", argv[1], sc->done);
        return output_flush();
}

static const StateChange state_report_lost = {
        "report-lost", "ReportLost", "Cannot report token", " lost",
        "is recorded as lost; kysod refuses its use from now on.",
};
static const StateChange state_revoke = {
        "revoke", "Revoke", "Cannot revoke token", "",
        "is revoked; kysod refuses its use from now on.",
};
static const StateChange state_return = {
        "return", "Return", "Cannot record the return of token", "",
        "is recorded as returned; kysod refuses its use from now on.",
};

int run_report_lost(const Options *opts, int argc, char **argv)
{
        return run_state_change(&state_report_lost, opts, argc, argv);
}

int run_revoke(const Options *opts, int argc, char **argv)
{
        return run_state_change(&state_revoke, opts, argc, argv);
}

int run_return(const Options *opts, int argc, char **argv)
{
        return run_state_change(&state_return, opts, argc, argv);
}

/* ------------------------------------------------------------------------- */
/* The summary for "kysoctl status"                                          */

typedef struct StateCount {
        const char *state;
        size_t n;
} StateCount;

void custody_print_summary(int64_t daemon_pid)
{
        static const char *const order[] = {
                "active", "locked", "lost", "revoked", "returned", "unassigned",
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *props = NULL, *objects = NULL;
        _cleanup_(freep) StateCount *counts = NULL;
        _cleanup_(freep) char *unknown = NULL, *group = NULL;
        TokenProps *tokens = NULL;
        size_t n = 0, n_counts = 0;
        pid_t pid;
        int r;

        if (daemon_pid <= 0 || sd_bus_open_system(&bus) < 0)
                return;
        /* The bus's kysod may not be the one on the socket (a development daemon, say). */
        r = sd_bus_get_name_creds(bus, KYSO_BUS_NAME, SD_BUS_CREDS_PID, &creds);
        if (r >= 0)
                r = sd_bus_creds_get_pid(creds, &pid);
        if (r < 0 || pid != daemon_pid) {
                log_debug("No custody summary: %s is not on the system bus, or is not kysod pid %" PRId64
                          ".",
                          KYSO_BUS_NAME, daemon_pid);
                return;
        }

        r = sd_bus_message_new_method_call(bus, &m, KYSO_BUS_NAME, KYSO_BUS_PATH,
                                           "org.freedesktop.DBus.Properties", "GetAll");
        if (r >= 0)
                r = sd_bus_message_set_auto_start(m, false);
        if (r >= 0)
                r = sd_bus_message_append(m, "s", KYSO_MANAGER_IFACE);
        if (r >= 0)
                r = sd_bus_call(bus, m, SUMMARY_TIMEOUT_USEC, NULL, &props);
        if (r < 0)
                return;
        r = sd_bus_message_enter_container(props, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(props, 'e', "sv")) > 0) {
                const char *name, *value;
                char **dest = NULL;

                r = sd_bus_message_read(props, "s", &name);
                if (r < 0)
                        break;
                if (streq(name, "UnknownTokens"))
                        dest = &unknown;
                else if (streq(name, "AdminGroup"))
                        dest = &group;
                if (dest && sd_bus_message_read(props, "v", "s", &value) > 0) {
                        free(*dest);
                        *dest = text_sanitize(value);
                } else
                        r = sd_bus_message_skip(props, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(props);
        }
        if (r < 0)
                return;

        r = managed_objects_call(bus, SUMMARY_TIMEOUT_USEC, false, NULL, &objects);
        if (r >= 0)
                r = tokens_parse(objects, &tokens, &n);
        if (r < 0)
                return;

        counts = calloc(ELEMENTSOF(order) + n, sizeof(*counts));
        if (!counts) {
                token_props_free(tokens, n);
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(order); i++)
                counts[n_counts++] = (StateCount) { order[i], 0 };
        for (size_t i = 0; i < n; i++) {
                const char *state = str_or(tokens[i].state, "?");
                size_t j;

                for (j = 0; j < n_counts && !streq(counts[j].state, state); j++)
                        ;
                if (j == n_counts)
                        counts[n_counts++] = (StateCount) { state, 0 };
                counts[j].n++;
        }

        printf("\nCustody (%s on the system bus):\n", KYSO_BUS_NAME);
        if (unknown)
                printf("  unknown tokens: %s%s\n", unknown,
                       streq(unknown, "deny")    ? " (a token without a custody record is refused)"
                       : streq(unknown, "allow") ? " (a token without a custody record is usable)"
                                                 : "");
        if (group)
                printf("  admin group:    %s\n", group);
        printf("  tokens:         ");
        if (n == 0)
                printf("none known");
        for (size_t j = 0, shown = 0; j < n_counts; j++) {
                _cleanup_(freep) char *s = NULL;

                if (counts[j].n == 0)
                        continue;
                s = text_sanitize(counts[j].state);
                printf("%s%zu %s", shown++ ? ", " : "", counts[j].n, s ? s : "?");
        }
        printf("\n");
        token_props_free(tokens, n);
}
