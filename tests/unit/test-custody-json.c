/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The registry's JSON format and the validation of custody records, as tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "custody-json.h"

static void test_dates(void **state)
{
        static const struct {
                const char *s;
                bool valid;
        } table[] = {
                { "2026-01-05", true },  { "2024-02-29", true },   { "2000-02-29", true },  { "2026-12-31", true },
                { "2026-02-29", false }, { "1900-02-29", false },  { "2026-02-30", false }, { "2026-04-31", false },
                { "2026-13-01", false }, { "2026-00-10", false },  { "2026-01-00", false }, { "2026-1-05", false },
                { "26-01-05", false },   { "2026-01-05x", false }, { "2026/01/05", false }, { "", false },
                { " 2026-01-05", false }, { "+026-01-05", false },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (custody_date_valid(table[i].s) != table[i].valid)
                        fail_msg("\"%s\": want %s", table[i].s, table[i].valid ? "valid" : "invalid");
        assert_false(custody_date_valid(NULL));
}

static void test_times(void **state)
{
        static const struct {
                const char *s;
                int r;
                int64_t t;
        } table[] = {
                { "1970-01-01T00:00:00Z", 0, 0 },
                { "2026-01-05T00:00:00Z", 0, 1767571200 },
                { "2026-01-05T07:00:00+07:00", 0, 1767571200 },
                { "2026-01-04T19:30:00-04:30", 0, 1767571200 },
                { "2026-01-05T00:00:00", -EINVAL, 0 },
                { "2026-01-05 00:00:00Z", -EINVAL, 0 },
                { "2026-02-30T00:00:00Z", -EINVAL, 0 },
                { "2026-01-05T24:00:00Z", -EINVAL, 0 },
                { "2026-01-05T00:00:00+7:00", -EINVAL, 0 },
                { "2026-01-05T00:00:00Zjunk", -EINVAL, 0 },
                { "2026-01-05", -EINVAL, 0 },
        };
        char buf[32];
        int64_t t;

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                t = -1;
                int r = custody_time_parse(table[i].s, &t);

                if (r != table[i].r)
                        fail_msg("\"%s\": got %d, want %d", table[i].s, r, table[i].r);
                if (r == 0 && t != table[i].t)
                        fail_msg("\"%s\": got %lld, want %lld", table[i].s, (long long) t, (long long) table[i].t);
        }
        custody_time_format(1767571200, buf, sizeof(buf));
        assert_string_equal(buf, "2026-01-05T00:00:00Z");
}

static CustodyRecord good(void)
{
        return (CustodyRecord) {
                .serial = "0123456789ABCDEF",
                .kind = CUSTODY_KIND_PERSONAL,
                .holder = "nguyenvana",
                .decision_ref = "12/QĐ-UBND",
                .decision_date = "2026-01-05",
                .valid_from = 1767571200,
                .state = CUSTODY_STATE_ACTIVE,
        };
}

static void test_record_validation(void **state)
{
        CustodyRecord r;

        r = good();
        assert_null(custody_record_invalid(&r));
        r.holder = "@vanthu";
        assert_null(custody_record_invalid(&r));
        r.valid_until = r.valid_from + 1;
        assert_null(custody_record_invalid(&r));

#define BAD(field, value, word)                                                                            \
        do {                                                                                               \
                const char *why;                                                                           \
                r = good();                                                                                \
                r.field = value;                                                                           \
                why = custody_record_invalid(&r);                                                          \
                if (!why || !strstr(why, word))                                                            \
                        fail_msg(#field " = " #value ": got \"%s\", want a message naming " word,           \
                                 why ? why : "(valid)");                                                   \
        } while (0)

        BAD(serial, NULL, "serial");
        BAD(serial, "", "serial");
        BAD(serial, "a\nb", "serial");
        BAD(kind, (CustodyKind) 7, "kind");
        BAD(kind, _CUSTODY_KIND_INVALID, "kind");
        BAD(holder, "a b", "holder");
        BAD(holder, NULL, "holder");
        BAD(decision_ref, "", "decision");
        BAD(decision_ref, NULL, "decision");
        BAD(decision_date, "2026-02-30", "decision_date");
        BAD(state, (CustodyState) 99, "state");
        BAD(valid_until, 1767571200, "valid_until");
        BAD(valid_until, 1, "valid_until");
        BAD(valid_from, -5, "valid_from");
        BAD(organization, "tab\there", "organization");
#undef BAD
}

/* Parses text; on failure returns the error message (malloc()ed) and NULL records. */
static char *parse(const char *text, CustodyRecord **recs, size_t *n)
{
        char *error = NULL;
        int r;

        *recs = NULL;
        *n = 0;
        r = custody_json_parse(text, strlen(text), recs, n, &error);
        if (r == 0) {
                assert_null(error);
                return NULL;
        }
        assert_int_equal(r, -EINVAL);
        assert_non_null(error);
        assert_null(*recs);
        return error;
}

#define HEAD "{\"format\":\"kyso-registry\",\"version\":1,\"records\":["
#define REC(serial, kind) "{\"serial\":\"" serial "\",\"kind\":\"" kind "\",\"holder\":\"u1\",\"decision\":\"1/QĐ\",\"decision_date\":\"2026-01-05\"}"

static void test_parse_errors(void **state)
{
        static const struct {
                const char *text;
                const char *want; /* in the message */
        } table[] = {
                { "", "not valid JSON" },
                { "{", "not valid JSON" },
                { HEAD "]} trailing", "not valid JSON" },
                { "[]", "not a kyso registry" },
                { "{\"format\":\"other\",\"version\":1,\"records\":[]}", "not a kyso registry" },
                { "{\"format\":\"kyso-registry\",\"version\":2,\"records\":[]}", "version" },
                { "{\"format\":\"kyso-registry\",\"version\":\"1\",\"records\":[]}", "version" },
                { "{\"format\":\"kyso-registry\",\"version\":1}", "records" },
                { "{\"format\":\"kyso-registry\",\"version\":1,\"records\":{}}", "records" },
                { HEAD "1]}", "record 1: not an object" },
                { HEAD REC("A", "personal") "," REC("B", "borrowed") "]}", "record 2: kind" },
                { HEAD REC("A", "personal") "," REC("A", "device") "]}", "record 2: serial \"A\" appears twice" },
                { HEAD "{\"serial\":\"A\",\"kind\":\"personal\",\"holder\":\"u\",\"decision\":\"1\"}]}",
                  "record 1: \"decision_date\" is missing" },
                { HEAD "{\"serial\":5,\"kind\":\"personal\",\"holder\":\"u\",\"decision\":\"1\",\"decision_date\":\"2026-01-05\"}]}",
                  "record 1: \"serial\" must be a string" },
                { HEAD "{\"serial\":\"A\",\"kind\":\"personal\",\"holder\":\"u\",\"decision\":\"1\",\"decision_date\":\"2026-01-05\",\"extra\":1}]}",
                  "unknown field \"extra\"" },
                { HEAD "{\"serial\":\"A\",\"kind\":\"personal\",\"holder\":\"u\",\"decision\":\"1\",\"decision_date\":\"2026-01-05\",\"valid_until\":\"tomorrow\"}]}",
                  "valid_until" },
                { HEAD "{\"serial\":\"A\",\"kind\":\"personal\",\"holder\":\"u\",\"decision\":\"1\",\"decision_date\":\"2026-01-05\",\"pin_change_required\":\"yes\"}]}",
                  "pin_change_required" },
                { HEAD "{\"serial\":\"A\\u0000B\",\"kind\":\"personal\",\"holder\":\"u\",\"decision\":\"1\",\"decision_date\":\"2026-01-05\"}]}",
                  "serial" },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                CustodyRecord *recs;
                size_t n;
                char *error = parse(table[i].text, &recs, &n);

                if (!error)
                        fail_msg("row %zu accepted: %s", i, table[i].text);
                if (!strstr(error, table[i].want))
                        fail_msg("row %zu: got \"%s\", want \"%s\"", i, error, table[i].want);
                free(error);
        }
}

static void test_round_trip(void **state)
{
        CustodyRecord in[2] = { good(), good() }, *out = NULL;
        char *text = NULL;
        size_t n = 0;

        in[1].serial = "FEDCBA9876543210";
        in[1].holder = "@vanthu";
        in[1].kind = CUSTODY_KIND_ORGANIZATION;
        in[1].organization = "Sở Nội vụ tỉnh";
        in[1].decision_signer = "Nguyễn Văn A";
        in[1].valid_until = 1798761600;
        in[1].state = CUSTODY_STATE_LOST;
        in[1].state_reason = "mất";
        in[1].pin_change_required = true;

        assert_int_equal(custody_json_export(in, 2, 1790000000, &text), 0);
        assert_null(parse(text, &out, &n));
        assert_int_equal(n, 2);
        for (size_t i = 0; i < 2; i++) {
                assert_string_equal(out[i].serial, in[i].serial);
                assert_int_equal(out[i].kind, in[i].kind);
                assert_string_equal(out[i].holder, in[i].holder);
                assert_string_equal(out[i].decision_ref, in[i].decision_ref);
                assert_string_equal(out[i].decision_date, in[i].decision_date);
                assert_int_equal(out[i].valid_from, in[i].valid_from);
                assert_int_equal(out[i].valid_until, in[i].valid_until);
                assert_int_equal(out[i].state, in[i].state);
                assert_int_equal(out[i].pin_change_required, in[i].pin_change_required);
        }
        assert_null(out[0].organization);
        assert_string_equal(out[1].organization, "Sở Nội vụ tỉnh");
        assert_string_equal(out[1].decision_signer, "Nguyễn Văn A");
        assert_string_equal(out[1].state_reason, "mất");
        custody_records_free(out, n);
        free(text);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dates),
                cmocka_unit_test(test_times),
                cmocka_unit_test(test_record_validation),
                cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_round_trip),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
