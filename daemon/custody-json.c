/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "custody-json.h"
#include "macro.h"
#include "policy.h"

#define TEXT_MAX 256U   /* organisation, signer, reason */
#define DECISION_MAX 128U
#define SERIAL_MAX 64U

bool custody_date_valid(const char *s)
{
        static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        int y, m, d, n = 0;

        if (!s || strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10)
                return false;
        if (s[4] != '-' || s[7] != '-' || strspn(s, "0123456789-") != 10)
                return false;
        if (y < 1900 || y > 9999 || m < 1 || m > 12 || d < 1)
                return false;
        if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                return d <= 29;
        return d <= days[m - 1];
}

/* Printable text: no control characters (a name or reference goes into logs and CSV reports). */
static bool text_valid(const char *s, size_t max, bool required)
{
        size_t n;

        if (!s)
                return !required;
        n = strlen(s);
        if (n > max || (required && n == 0))
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return true;
}

const char *custody_record_invalid(const CustodyRecord *r)
{
        if (!text_valid(r->serial, SERIAL_MAX, true))
                return "serial: missing, too long or not printable";
        if (!custody_kind_to_string(r->kind))
                return "kind: must be organization, personal or device";
        if (!policy_holder_valid(r->holder))
                return "holder: must be a user name or @group";
        if (!text_valid(r->decision_ref, DECISION_MAX, true))
                return "decision: missing, too long or not printable";
        if (!custody_date_valid(r->decision_date))
                return "decision_date: must be a date YYYY-MM-DD";
        if (!text_valid(r->decision_signer, TEXT_MAX, false))
                return "signed_by: too long or not printable";
        if (!text_valid(r->organization, TEXT_MAX, false))
                return "organization: too long or not printable";
        if (!text_valid(r->state_reason, TEXT_MAX, false))
                return "state_reason: too long or not printable";
        if (!custody_state_to_string(r->state))
                return "state: must be active, lost, revoked, returned or locked";
        if (r->valid_from < 0)
                return "valid_from: before 1970";
        if (r->valid_until != 0 && r->valid_until <= r->valid_from)
                return "valid_until: must be after valid_from";
        return NULL;
}

void custody_time_format(int64_t t, char *buf, size_t size)
{
        time_t tt = (time_t) t;
        struct tm tm;

        if (!gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, size, "%lld", (long long) t);
}

int custody_time_parse(const char *s, int64_t *ret)
{
        struct tm tm = {};
        const char *rest;
        char date[11];
        int sign = 0, oh = 0, om = 0, n = 0;
        time_t t;

        if (!s || strlen(s) < 20 || s[10] != 'T')
                return -EINVAL;
        memcpy(date, s, 10);
        date[10] = '\0';
        /* strptime() alone takes 2026-02-31 and single digits; the calendar check does not. */
        if (!custody_date_valid(date) || strspn(s + 11, "0123456789:") != 8)
                return -EINVAL;
        rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!rest || rest != s + 19)
                return -EINVAL;
        if (streq(rest, "Z"))
                sign = 0;
        else if ((rest[0] == '+' || rest[0] == '-') && sscanf(rest + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
                 n == 5 && rest[6] == '\0' && oh <= 23 && om <= 59)
                sign = rest[0] == '+' ? 1 : -1;
        else
                return -EINVAL;
        t = timegm(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        *ret = (int64_t) t - sign * (oh * 3600 + om * 60);
        return 0;
}

static json_object *string_or_null(const char *s)
{
        return s ? json_object_new_string(s) : NULL;
}

json_object *custody_time_json(int64_t t)
{
        char buf[32];

        if (t == 0)
                return NULL;
        custody_time_format(t, buf, sizeof(buf));
        return json_object_new_string(buf);
}

int custody_json_export(const CustodyRecord *recs, size_t n, int64_t now, char **ret)
{
        json_object *root = json_object_new_object(), *arr = json_object_new_array();
        char *text;

        if (!root || !arr) {
                json_object_put(root);
                json_object_put(arr);
                return -ENOMEM;
        }
        json_object_object_add(root, "format", json_object_new_string(CUSTODY_JSON_FORMAT));
        json_object_object_add(root, "version", json_object_new_int(CUSTODY_JSON_VERSION));
        json_object_object_add(root, "exported_at", custody_time_json(now));
        for (size_t i = 0; i < n; i++) {
                const CustodyRecord *r = &recs[i];
                json_object *o = json_object_new_object();

                json_object_object_add(o, "serial", json_object_new_string(r->serial));
                json_object_object_add(o, "kind", json_object_new_string(custody_kind_to_string(r->kind)));
                json_object_object_add(o, "holder", json_object_new_string(r->holder));
                json_object_object_add(o, "organization", string_or_null(r->organization));
                json_object_object_add(o, "decision", json_object_new_string(r->decision_ref));
                json_object_object_add(o, "decision_date", json_object_new_string(r->decision_date));
                json_object_object_add(o, "signed_by", string_or_null(r->decision_signer));
                json_object_object_add(o, "valid_from", custody_time_json(r->valid_from));
                json_object_object_add(o, "valid_until", custody_time_json(r->valid_until));
                json_object_object_add(o, "state", json_object_new_string(custody_state_to_string(r->state)));
                json_object_object_add(o, "state_reason", string_or_null(r->state_reason));
                json_object_object_add(o, "pin_change_required", json_object_new_boolean(r->pin_change_required));
                json_object_array_add(arr, o);
        }
        json_object_object_add(root, "records", arr);
        text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

/* Sets *ret_error to the message (prefixed "record N: " unless index is SIZE_MAX); returns -EINVAL. */
static int fail(char **ret_error, size_t index, const char *fmt, ...) _printf_(3, 4);
static int fail(char **ret_error, size_t index, const char *fmt, ...)
{
        _cleanup_(freep) char *m = NULL;
        va_list ap;
        int k;

        if (!ret_error)
                return -EINVAL;
        free(*ret_error);
        *ret_error = NULL;
        va_start(ap, fmt);
        k = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (k < 0) {
                m = NULL;
                return -EINVAL;
        }
        if (index == SIZE_MAX)
                *ret_error = TAKE_PTR(m);
        else if (asprintf(ret_error, "record %zu: %s", index + 1, m) < 0)
                *ret_error = NULL;
        return -EINVAL;
}

/* A string member: absent or null leaves *ret NULL (allowed when !required); anything else but a string fails. */
static int member_string(json_object *o, const char *key, bool required, char **ret)
{
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return required ? -ENOENT : 0;
        if (!json_object_is_type(v, json_type_string))
                return -EINVAL;
        if (strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
                return -EINVAL; /* an embedded NUL */
        *ret = strdup(json_object_get_string(v));
        return *ret ? 0 : -ENOMEM;
}

static const char *const record_keys[] = {
        "serial", "kind", "holder", "organization", "decision", "decision_date", "signed_by",
        "valid_from", "valid_until", "state", "state_reason", "pin_change_required",
};

static int parse_record(json_object *o, size_t index, CustodyRecord *r, char **ret_error)
{
        _cleanup_(freep) char *kind = NULL, *state = NULL, *from = NULL, *until = NULL;
        json_object *v;
        const char *why;
        int k;

        if (!json_object_is_type(o, json_type_object))
                return fail(ret_error, index, "%s", "not an object");
        json_object_object_foreach(o, key, val) {
                bool ok = false;

                (void) val;
                for (size_t i = 0; i < ELEMENTSOF(record_keys); i++)
                        ok = ok || streq(key, record_keys[i]);
                if (!ok)
                        return fail(ret_error, index, "unknown field \"%s\"", key);
        }

#define STR(key, required, field)                                                                           \
        do {                                                                                               \
                k = member_string(o, key, required, field);                                                \
                if (k == -ENOMEM)                                                                          \
                        return -ENOMEM;                                                                    \
                if (k < 0)                                                                                 \
                        return fail(ret_error, index, k == -ENOENT ? "\"%s\" is missing" : "\"%s\" must be a string", key); \
        } while (0)

        STR("serial", true, &r->serial);
        STR("kind", true, &kind);
        STR("holder", true, &r->holder);
        STR("organization", false, &r->organization);
        STR("decision", true, &r->decision_ref);
        STR("decision_date", true, &r->decision_date);
        STR("signed_by", false, &r->decision_signer);
        STR("valid_from", false, &from);
        STR("valid_until", false, &until);
        STR("state", false, &state);
        STR("state_reason", false, &r->state_reason);
#undef STR

        r->kind = custody_kind_from_string(kind);
        r->state = state ? custody_state_from_string(state) : CUSTODY_STATE_ACTIVE;
        if (from && custody_time_parse(from, &r->valid_from) < 0)
                return fail(ret_error, index, "%s", "valid_from: must be an RFC 3339 time (2026-01-05T00:00:00Z)");
        if (until && custody_time_parse(until, &r->valid_until) < 0)
                return fail(ret_error, index, "%s", "valid_until: must be an RFC 3339 time (2026-12-31T17:00:00Z)");
        if (json_object_object_get_ex(o, "pin_change_required", &v) && !json_object_is_type(v, json_type_null)) {
                if (!json_object_is_type(v, json_type_boolean))
                        return fail(ret_error, index, "%s", "pin_change_required: must be true or false");
                r->pin_change_required = json_object_get_boolean(v);
        }
        why = custody_record_invalid(r);
        if (why)
                return fail(ret_error, index, "%s", why);
        return 0;
}

static int compare_serials(const void *a, const void *b)
{
        const CustodyRecord *const *x = a, *const *y = b;
        int c = strcmp((*x)->serial, (*y)->serial);

        return c != 0 ? c : ((*x) < (*y) ? -1 : 1);
}

/* Finds two records of one serial: 1 with the later one's index in *ret_index, 0 if none, -ENOMEM. */
static int duplicate_serial(CustodyRecord *recs, size_t n, size_t *ret_index)
{
        _cleanup_(freep) CustodyRecord **sorted = calloc(n ? n : 1, sizeof(CustodyRecord *));
        bool found = false;

        if (!sorted)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                sorted[i] = &recs[i];
        qsort(sorted, n, sizeof(CustodyRecord *), compare_serials);
        for (size_t i = 1; i < n; i++)
                if (streq(sorted[i - 1]->serial, sorted[i]->serial)) {
                        size_t later = (size_t) (sorted[i] - recs);

                        if (!found || later < *ret_index)
                                *ret_index = later;
                        found = true;
                }
        return found;
}

int custody_json_parse(const char *text, size_t len, CustodyRecord **ret, size_t *ret_n, char **ret_error)
{
        json_tokener *tok;
        json_object *root, *v, *arr;
        CustodyRecord *recs = NULL;
        size_t n;
        int r;

        if (len > CUSTODY_JSON_MAX)
                return fail(ret_error, SIZE_MAX, "%s", "the document is larger than 16 MiB");
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        root = json_tokener_parse_ex(tok, text, (int) len);
        if (!root || json_tokener_get_parse_end(tok) != len) {
                r = fail(ret_error, SIZE_MAX, "not valid JSON: %s",
                         root ? "data after the document" : json_tokener_error_desc(json_tokener_get_error(tok)));
                json_object_put(root);
                json_tokener_free(tok);
                return r;
        }
        json_tokener_free(tok);

        if (!json_object_is_type(root, json_type_object) || !json_object_object_get_ex(root, "format", &v) ||
            !json_object_is_type(v, json_type_string) || !streq(json_object_get_string(v), CUSTODY_JSON_FORMAT)) {
                json_object_put(root);
                return fail(ret_error, SIZE_MAX, "%s", "not a kyso registry (\"format\" must be \"" CUSTODY_JSON_FORMAT "\")");
        }
        if (!json_object_object_get_ex(root, "version", &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) != CUSTODY_JSON_VERSION) {
                json_object_put(root);
                return fail(ret_error, SIZE_MAX, "%s", "unsupported \"version\" (this kysod reads version 1)");
        }
        if (!json_object_object_get_ex(root, "records", &arr) || !json_object_is_type(arr, json_type_array)) {
                json_object_put(root);
                return fail(ret_error, SIZE_MAX, "%s", "\"records\" must be an array");
        }
        n = json_object_array_length(arr);
        if (n > CUSTODY_JSON_RECORDS_MAX) {
                json_object_put(root);
                return fail(ret_error, SIZE_MAX, "%s", "too many records (at most 100000)");
        }
        recs = calloc(n ? n : 1, sizeof(CustodyRecord));
        if (!recs) {
                json_object_put(root);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                r = parse_record(json_object_array_get_idx(arr, i), i, &recs[i], ret_error);
                if (r < 0) {
                        custody_records_free(recs, n);
                        json_object_put(root);
                        return r;
                }
        }
        json_object_put(root);

        /* One record per token: a document that says two things of one token is a mistake to point out. */
        {
                size_t dup = 0;

                r = duplicate_serial(recs, n, &dup);
                if (r != 0) {
                        if (r > 0)
                                r = fail(ret_error, dup, "serial \"%s\" appears twice", recs[dup].serial);
                        custody_records_free(recs, n);
                        return r;
                }
        }
        *ret = recs;
        *ret_n = n;
        return 0;
}
