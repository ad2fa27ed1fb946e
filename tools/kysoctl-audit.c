/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit log and the subscriber report. kysod keeps both and decides who
 * sees what (an ordinary user gets only their own audit records; checking
 * the log and the report need root or the admin group); kysoctl turns what
 * an administrator types into the filter, and what kysod sends into a table,
 * pretty JSON, or CSV for a spreadsheet (columns fixed here, documented in
 * kysoctl(1), since offices keep these files).
 */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "kysoctl-audit.h"
#include "kysoctl-bus.h"
#include "kysoctl-custody.h"
#include "kysoctl-output.h"
#include "kysoctl-util.h"
#include "log.h"
#include "macro.h"

enum {
        OPT_SINCE = 0x300,
        OPT_UNTIL,
        OPT_TOKEN,
        OPT_USER,
        OPT_EVENT,
        OPT_LIMIT,
        OPT_FORMAT,
        OPT_OUTPUT = 'o',
};

const struct option audit_options[] = {
        { "since", required_argument, NULL, OPT_SINCE },
        { "until", required_argument, NULL, OPT_UNTIL },
        { "token", required_argument, NULL, OPT_TOKEN },
        { "user", required_argument, NULL, OPT_USER },
        { "event", required_argument, NULL, OPT_EVENT },
        { "limit", required_argument, NULL, OPT_LIMIT },
        {},
};

const struct option report_options[] = {
        { "format", required_argument, NULL, OPT_FORMAT },
        { "since", required_argument, NULL, OPT_SINCE },
        { "until", required_argument, NULL, OPT_UNTIL },
        { "output", required_argument, NULL, OPT_OUTPUT },
        {},
};

/* The events data/org.kyso1.xml lists; kysod may know more. */
static const char *const audit_events[] = {
        "login", "logout", "sign", "decrypt", "unwrap", "pin-change", "pin-init", "custody", "handover",
        "refused",
};

/* A period [since, until) from --since and --until: 0 for a bound not given. Exit status or 0. */
static int check_period(const char *since_arg, const char *until_arg, int64_t *ret_since, int64_t *ret_until)
{
        int64_t since = 0, until = 0;
        int r;

        if ((since_arg && (r = check_time("--since", since_arg, TIME_BOUND_START, &since)) != 0) ||
            (until_arg && (r = check_time("--until", until_arg, TIME_BOUND_END, &until)) != 0))
                return r;
        if (since && until && until <= since) {
                log_error("--until %s is not after --since %s: the period is empty.", until_arg, since_arg);
                return EXIT_USAGE;
        }
        *ret_since = since;
        *ret_until = until;
        return 0;
}

static const char *json_get_str(json_object *o, const char *key)
{
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static bool json_get_int(json_object *o, const char *key, int64_t *ret)
{
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return true;
}

/* A time kysod sent as RFC 3339 (or, out of its range, a number) in local time; "" for null. */
static const char *json_get_local_time(json_object *o, const char *key, char *buf, size_t size)
{
        const char *s = json_get_str(o, key);
        int64_t t;

        if (s) {
                if (parse_rfc3339(s, &t) < 0)
                        return s; /* keep what kysod said rather than lose it */
                return format_time_plain(t, buf, size);
        }
        if (json_get_int(o, key, &t))
                return format_time_plain(t, buf, size);
        return "";
}

/* ------------------------------------------------------------------------- */
/* audit                                                                      */

/* --user: a user name of this machine, or a uid (for records of a uid without a name here). */
static int check_user(const char *value, uint32_t *ret)
{
        const char *p;
        uint64_t v = 0;
        struct passwd *pw;

        for (p = value; *p >= '0' && *p <= '9' && v <= UINT32_MAX; p++)
                v = v * 10 + (uint64_t) (*p - '0');
        if (*value && !*p) {
                if (v >= UINT32_MAX) {
                        log_error("--user %s is not a uid.", value);
                        return EXIT_USAGE;
                }
                *ret = (uint32_t) v;
                return 0;
        }
        errno = 0;
        pw = *value ? getpwnam(value) : NULL;
        if (!pw) {
                log_error("--user: there is no user '%s' on this machine (see 'getent passwd %s'); give a "
                          "uid for one that is not.",
                          value, value);
                return EXIT_USAGE;
        }
        *ret = (uint32_t) pw->pw_uid;
        return 0;
}

static int check_limit(const char *value, uint32_t *ret)
{
        uint64_t v = 0;
        const char *p;

        for (p = value; *p >= '0' && *p <= '9' && v <= UINT32_MAX; p++)
                v = v * 10 + (uint64_t) (*p - '0');
        if (!*value || *p || v == 0 || v > UINT32_MAX) {
                log_error("--limit %s is not a number of records (1 or more).", value);
                return EXIT_USAGE;
        }
        *ret = (uint32_t) v;
        return 0;
}

static int print_audit_table(json_object *records)
{
        static const char *const header[] = {
                "TIME", "USER", "EVENT", "TOKEN", "KEY", "MECHANISM", "RESULT",
        };
        size_t n = json_object_array_length(records);
        Table table;

        if (n == 0) {
                printf("No audit records match.\n");
                return EXIT_OK;
        }
        table_init(&table, header, ELEMENTSOF(header));
        for (size_t i = 0; i < n; i++) {
                json_object *rec = json_object_array_get_idx(records, i);
                const char *user = json_get_str(rec, "user"), *key = json_get_str(rec, "key_label");
                char time[TIME_TEXT_MAX], uid[32] = "?";
                int64_t u;

                if (json_get_int(rec, "uid", &u))
                        snprintf(uid, sizeof(uid), "uid %" PRId64, u);
                if (!key || !*key)
                        key = json_get_str(rec, "key_id");
                table_add(&table, json_get_local_time(rec, "time", time, sizeof(time)));
                table_add(&table, user && *user ? user : uid);
                table_add(&table, json_get_str(rec, "event"));
                table_add(&table, json_get_str(rec, "serial"));
                table_add(&table, key);
                table_add(&table, json_get_str(rec, "mechanism"));
                table_add(&table, json_get_str(rec, "result"));
        }
        return table_print(&table);
}

#define APPEND_FILTER(m, r, key, sig, value)                                                               \
        do {                                                                                               \
                if ((r) >= 0)                                                                              \
                        (r) = sd_bus_message_append((m), "{sv}", (key), (sig), (value));                   \
        } while (0)

int run_audit(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *since_arg = NULL, *until_arg = NULL, *serial = NULL, *user = NULL, *event = NULL,
                   *limit_arg = NULL, *text;
        int64_t since = 0, until = 0;
        uint32_t uid = 0, limit = 0;
        json_object *records;
        int r;

        if (argc > 1) {
                log_error("'audit' takes no arguments%s; see 'kysoctl audit --help'.",
                          streq(argv[1], "verify") ? " before 'verify' (kysoctl audit verify)" : "");
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < opts->n_cmd_options; i++) {
                const char *a = opts->cmd_options[i].arg;

                switch (opts->cmd_options[i].id) {
                case OPT_SINCE:
                        since_arg = a;
                        break;
                case OPT_UNTIL:
                        until_arg = a;
                        break;
                case OPT_TOKEN:
                        serial = a;
                        break;
                case OPT_USER:
                        user = a;
                        break;
                case OPT_EVENT:
                        event = a;
                        break;
                case OPT_LIMIT:
                        limit_arg = a;
                        break;
                }
        }
        if ((r = check_period(since_arg, until_arg, &since, &until)) != 0 ||
            (serial && (r = check_text("--token", serial, false)) != 0) ||
            (event && (r = check_text("--event", event, false)) != 0) ||
            (user && (r = check_user(user, &uid)) != 0) ||
            (limit_arg && (r = check_limit(limit_arg, &limit)) != 0))
                return r;
        if (event) {
                bool known = false;

                for (size_t i = 0; i < ELEMENTSOF(audit_events); i++)
                        known = known || streq(event, audit_events[i]);
                if (!known)
                        log_warning("--event %s is not an event kysoctl knows (login, logout, sign, "
                                    "decrypt, unwrap, pin-change, pin-init, custody, handover, refused); "
                                    "asking kysod anyway.",
                                    event);
        }

        if (user && uid != (uint32_t) geteuid() && geteuid() != 0)
                log_notice("Unless you are in kysod's admin group, kysod gives you only your own records, "
                           "whatever --user says.");

        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = bus_manager_call_new(bus, "GetAudit", &m);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (since)
                APPEND_FILTER(m, r, "since", "x", since);
        if (until)
                APPEND_FILTER(m, r, "until", "x", until);
        if (serial)
                APPEND_FILTER(m, r, "serial", "s", serial);
        if (user)
                APPEND_FILTER(m, r, "uid", "u", uid);
        if (event)
                APPEND_FILTER(m, r, "event", "s", event);
        if (limit)
                APPEND_FILTER(m, r, "limit", "u", limit);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return bus_build_failed(r);

        r = bus_call(bus, m, ACCESS_ADMIN, "Cannot read the audit log", &reply);
        if (r != 0)
                return r;
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0)
                return bus_reply_invalid(r);
        records = json_parse_document(text, strlen(text), "kysod's audit records");
        if (!records)
                return EXIT_FAILED;
        if (!json_object_is_type(records, json_type_array)) {
                json_object_put(records);
                return bus_reply_invalid(-EBADMSG);
        }
        if (opts->json)
                r = output_json(records);
        else {
                r = print_audit_table(records);
                json_object_put(records);
        }
        return r != EXIT_OK ? r : output_flush();
}

int run_audit_verify(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *reason;
        int intact;
        uint64_t checked;
        int64_t first_bad;
        int r;

        if (argc > 1) {
                log_error("'audit verify' takes no arguments; see 'kysoctl audit verify --help'.");
                return EXIT_USAGE;
        }
        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = bus_manager_call_new(bus, "VerifyAudit", &m);
        if (r < 0)
                return bus_build_failed(r);
        r = bus_call(bus, m, ACCESS_ADMIN, "Cannot check the audit log", &reply);
        if (r != 0)
                return r;
        r = sd_bus_message_read(reply, "btxs", &intact, &checked, &first_bad, &reason);
        if (r < 0)
                return bus_reply_invalid(r);

        if (opts->json) {
                json_object *o = json_object_new_object();

                if (o) {
                        json_object_object_add(o, "intact", json_object_new_boolean(intact));
                        json_object_object_add(o, "checked", json_object_new_uint64(checked));
                        json_object_object_add(o, "first_bad_id", json_object_new_int64(first_bad));
                        json_object_object_add(o, "reason", json_object_new_string(reason));
                }
                r = output_json(o);
                if (r != EXIT_OK)
                        return r;
        } else if (intact)
                printf("Audit log intact: %" PRIu64 " record%s checked.\n", checked,
                       checked == 1 ? "" : "s");
        else {
                _cleanup_(freep) char *why = text_sanitize(*reason ? reason : "no reason given");

                printf("Audit log BROKEN at record %" PRId64 ": %s\n", first_bad, why ? why : "?");
        }
        r = output_flush();
        return r != EXIT_OK ? r : intact ? EXIT_OK : EXIT_FAILED;
}

/* ------------------------------------------------------------------------- */
/* report                                                                     */

/* The CSV columns, in order: the report's keys, documented in kysoctl(1). */
typedef enum ReportColumnType {
        COLUMN_TEXT,
        COLUMN_TIME,
        COLUMN_NUMBER,
        COLUMN_SUBJECTS,
} ReportColumnType;

static const struct {
        const char *key;
        ReportColumnType type;
} report_columns[] = {
        { "serial", COLUMN_TEXT },
        { "label", COLUMN_TEXT },
        { "kind", COLUMN_TEXT },
        { "holder", COLUMN_TEXT },
        { "organization", COLUMN_TEXT },
        { "decision", COLUMN_TEXT },
        { "decision_date", COLUMN_TEXT },
        { "signed_by", COLUMN_TEXT },
        { "state", COLUMN_TEXT },
        { "valid_from", COLUMN_TIME },
        { "valid_until", COLUMN_TIME },
        { "pin_changed_at", COLUMN_TIME },
        { "pin_due_at", COLUMN_TIME },
        { "pin_state", COLUMN_TEXT },
        { "certificate_subjects", COLUMN_SUBJECTS },
        { "first_seen", COLUMN_TIME },
        { "last_seen", COLUMN_TIME },
        { "signatures", COLUMN_NUMBER },
};

/* The subjects of the token's certificates, joined with " | ". */
static void csv_subjects_append(TextBuffer *b, json_object *token)
{
        json_object *certs;
        TextBuffer joined = {};
        size_t n;

        if (!json_object_object_get_ex(token, "certificates", &certs) ||
            !json_object_is_type(certs, json_type_array) || (n = json_object_array_length(certs)) == 0) {
                csv_field_append(b, "", false);
                return;
        }
        for (size_t i = 0, k = 0; i < n; i++) {
                const char *subject = json_get_str(json_object_array_get_idx(certs, i), "subject");

                if (!subject)
                        continue;
                if (k++ > 0)
                        text_buffer_append(&joined, " | ", 3);
                text_buffer_append(&joined, subject, strlen(subject));
        }
        if (joined.failed)
                b->failed = true;
        csv_field_append(b, joined.data ? joined.data : "", false);
        text_buffer_done(&joined);
}

static void csv_token_append(TextBuffer *b, json_object *token)
{
        for (size_t c = 0; c < ELEMENTSOF(report_columns); c++) {
                const char *key = report_columns[c].key;
                char buf[TIME_TEXT_MAX];
                int64_t v;

                switch (report_columns[c].type) {
                case COLUMN_TEXT:
                        csv_field_append(b, json_get_str(token, key), c == 0);
                        break;
                case COLUMN_TIME:
                        csv_field_append(b, json_get_local_time(token, key, buf, sizeof(buf)), c == 0);
                        break;
                case COLUMN_NUMBER:
                        if (json_get_int(token, key, &v))
                                snprintf(buf, sizeof(buf), "%" PRId64, v);
                        else
                                buf[0] = '\0';
                        csv_field_append(b, buf, c == 0);
                        break;
                case COLUMN_SUBJECTS:
                        csv_subjects_append(b, token);
                        break;
                }
        }
        csv_row_end(b);
}

/* The CSV of a report document: BOM, header row, a row per token. NULL (logged) when out of memory. */
static char *report_csv(json_object *tokens, size_t *ret_len)
{
        TextBuffer b = {};
        size_t n = json_object_array_length(tokens);

        text_buffer_append(&b, CSV_BOM, strlen(CSV_BOM));
        for (size_t c = 0; c < ELEMENTSOF(report_columns); c++)
                csv_field_append(&b, report_columns[c].key, c == 0);
        csv_row_end(&b);
        for (size_t i = 0; i < n; i++)
                csv_token_append(&b, json_object_array_get_idx(tokens, i));
        if (b.failed) {
                text_buffer_done(&b);
                log_oom();
                return NULL;
        }
        *ret_len = b.len;
        return b.data;
}

int run_report(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(freep) char *data = NULL;
        const char *format = NULL, *since_arg = NULL, *until_arg = NULL, *output = NULL, *text;
        json_object *doc, *tokens;
        int64_t since = 0, until = 0;
        size_t len = 0, n_tokens;
        bool csv;
        int r;

        if (argc > 1) {
                log_error("'report' takes no arguments (to write a file: -o FILE); see 'kysoctl report "
                          "--help'.");
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < opts->n_cmd_options; i++) {
                const char *a = opts->cmd_options[i].arg;

                switch (opts->cmd_options[i].id) {
                case OPT_FORMAT:
                        format = a;
                        break;
                case OPT_SINCE:
                        since_arg = a;
                        break;
                case OPT_UNTIL:
                        until_arg = a;
                        break;
                case OPT_OUTPUT:
                        output = a;
                        break;
                }
        }
        if (!format && opts->json)
                format = "json";
        if (!format) {
                log_error("'report' needs --format csv or --format json; see 'kysoctl report --help'.");
                return EXIT_USAGE;
        }
        if (!streq(format, "csv") && !streq(format, "json")) {
                log_error("--format %s is not a report format: give csv or json.", format);
                return EXIT_USAGE;
        }
        csv = streq(format, "csv");
        if (csv && opts->json) {
                log_error("--json and --format csv contradict each other: give one.");
                return EXIT_USAGE;
        }
        if (output && !*output) {
                log_error("-o needs a file name, or - for standard output.");
                return EXIT_USAGE;
        }
        if (output && streq(output, "-"))
                output = NULL;
        r = check_period(since_arg, until_arg, &since, &until);
        if (r != 0)
                return r;

        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = bus_manager_call_new(bus, "GetReport", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "xx", since, until);
        if (r < 0)
                return bus_build_failed(r);
        r = bus_call(bus, m, ACCESS_ADMIN, "Cannot make the report", &reply);
        if (r != 0)
                return r;
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0)
                return bus_reply_invalid(r);
        doc = json_parse_document(text, strlen(text), "kysod's report");
        if (!doc)
                return EXIT_FAILED;
        if (!json_object_is_type(doc, json_type_object) ||
            !json_object_object_get_ex(doc, "tokens", &tokens) ||
            !json_object_is_type(tokens, json_type_array)) {
                json_object_put(doc);
                return bus_reply_invalid(-EBADMSG);
        }
        n_tokens = json_object_array_length(tokens);

        if (csv)
                data = report_csv(tokens, &len);
        else {
                const char *pretty = json_object_to_json_string_ext(doc, OUTPUT_JSON_FLAGS);

                if (pretty && asprintf(&data, "%s\n", pretty) >= 0)
                        len = strlen(data);
                else {
                        data = NULL;
                        log_oom();
                }
        }
        json_object_put(doc);
        if (!data)
                return EXIT_FAILED;

        if (!output) {
                if (fwrite(data, 1, len, stdout) != len) {
                        log_error_errno(errno, "Failed to write the output: %m");
                        return EXIT_FAILED;
                }
                return output_flush();
        }
        if (write_file_atomic(output, data, len) < 0)
                return EXIT_FAILED;
        if (!opts->json)
                printf("Wrote the report (%zu token%s, %s) to %s.\n", n_tokens, n_tokens == 1 ? "" : "s",
                       format, output);
        return output_flush();
}
