/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysoctl's parsers and formatters, as tables: what an administrator types for
 * "kysoctl assign" and what it must mean, and what kysoctl prints back.
 * Zones are POSIX TZ strings, so the test needs no tzdata.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <locale.h>

#include "kysoctl-util.h"
#include "macro.h"

#define TZ_VIETNAM "ICT-7"                    /* UTC+7, no daylight saving time */
#define TZ_BERLIN "CET-1CEST,M3.5.0,M10.5.0/3" /* DST from the last Sunday of March */

static void set_tz(const char *tz)
{
        setenv("TZ", tz, 1);
        tzset();
}

static void test_parse_date(void **state)
{
        static const struct {
                const char *s;
                bool ok;
                int y, m, d;
        } table[] = {
                { "2026-01-05", true, 2026, 1, 5 },
                { "2024-02-29", true, 2024, 2, 29 }, /* leap year */
                { "2000-02-29", true, 2000, 2, 29 }, /* divisible by 400 */
                { "2026-12-31", true, 2026, 12, 31 },
                { "2026-02-30", false },
                { "2025-02-29", false },
                { "1900-02-29", false }, /* divisible by 100, not by 400 */
                { "2026-04-31", false },
                { "2026-13-01", false },
                { "2026-00-10", false },
                { "2026-01-00", false },
                { "2026-01-32", false },
                { "1899-12-31", false },
                { "2026-1-5", false },
                { "2026-01-05x", false },
                { "2026-01-05T00:00", false },
                { " 2026-01-05", false },
                { "2026/01/05", false },
                { "+026-01-05", false },
                { "2026-01--5", false },
                { "05/01/2026", false },
                { "", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int y = -1, m = -1, d = -1;
                int r = parse_date(table[i].s, &y, &m, &d);

                if (table[i].ok != (r == 0))
                        fail_msg("parse_date(\"%s\") = %d", table[i].s, r);
                if (table[i].ok && (y != table[i].y || m != table[i].m || d != table[i].d))
                        fail_msg("parse_date(\"%s\") gave %d-%d-%d", table[i].s, y, m, d);
                if (!table[i].ok && (y != -1 || m != -1 || d != -1))
                        fail_msg("parse_date(\"%s\") wrote its result on failure", table[i].s);
        }
        assert_int_equal(parse_date(NULL, &(int) { 0 }, &(int) { 0 }, &(int) { 0 }), -EINVAL);
}

static void test_parse_time(void **state)
{
        static const struct {
                const char *s;
                TimeBound bound;
                int r;
                int64_t want;
        } table[] = {
                /* A bare date: its start, or its end (the next day's start), in local time. */
                { "2026-01-05", TIME_BOUND_START, 0, 1767546000 },
                { "2026-01-05", TIME_BOUND_END, 0, 1767632400 },
                { "2026-12-31", TIME_BOUND_END, 0, 1798736400 },  /* into the next year */
                { "2024-02-28", TIME_BOUND_END, 0, 1709139600 },  /* onto the leap day */
                /* Date and time: exactly that, whatever the bound. */
                { "2026-01-05T14:30", TIME_BOUND_START, 0, 1767598200 },
                { "2026-01-05T14:30", TIME_BOUND_END, 0, 1767598200 },
                { "2026-01-05T14:30:15", TIME_BOUND_END, 0, 1767598215 },
                { "2026-01-05T00:00", TIME_BOUND_END, 0, 1767546000 },
                { "2026-01-05T23:59:59", TIME_BOUND_START, 0, 1767632399 },
                /* Unix seconds. */
                { "@1767571200", TIME_BOUND_START, 0, 1767571200 },
                { "@1767571200", TIME_BOUND_END, 0, 1767571200 },
                { "@1", TIME_BOUND_START, 0, 1 },
                /* Impossible dates and times. */
                { "2026-02-30", TIME_BOUND_END, -EINVAL },
                { "2026-02-29", TIME_BOUND_START, -EINVAL },
                { "2026-02-30T10:00", TIME_BOUND_START, -EINVAL },
                { "2026-01-05T24:00", TIME_BOUND_START, -EINVAL },
                { "2026-01-05T12:60", TIME_BOUND_START, -EINVAL },
                { "2026-01-05T12:00:60", TIME_BOUND_START, -EINVAL },
                /* Bad syntax. */
                { "2026-01-05 12:00", TIME_BOUND_START, -EINVAL },
                { "2026-01-05T1:00", TIME_BOUND_START, -EINVAL },
                { "2026-01-05T12:00:5", TIME_BOUND_START, -EINVAL },
                { "2026-01-05T12", TIME_BOUND_START, -EINVAL },
                { "2026-01-05T", TIME_BOUND_START, -EINVAL },
                { "2026-01-05T12:00Z", TIME_BOUND_START, -EINVAL },
                { "tomorrow", TIME_BOUND_START, -EINVAL },
                { "", TIME_BOUND_START, -EINVAL },
                { "@", TIME_BOUND_START, -EINVAL },
                { "@0", TIME_BOUND_START, -EINVAL }, /* 0 means "none" on the bus */
                { "@-5", TIME_BOUND_START, -EINVAL },
                { "@+5", TIME_BOUND_START, -EINVAL },
                { "@ 5", TIME_BOUND_START, -EINVAL },
                { "@12a", TIME_BOUND_START, -EINVAL },
                { "@99999999999999999999", TIME_BOUND_START, -ERANGE },
                /* Before 1970: not representable on the bus. */
                { "1969-12-31", TIME_BOUND_START, -ERANGE },
                { "1970-01-01", TIME_BOUND_START, -ERANGE }, /* 1969-12-31T17:00Z in UTC+7 */
        };

        set_tz(TZ_VIETNAM);
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int64_t t = -1;
                int r = parse_time(table[i].s, table[i].bound, &t);

                if (r != table[i].r)
                        fail_msg("parse_time(\"%s\", %d) = %d, want %d", table[i].s, table[i].bound, r,
                                 table[i].r);
                if (r == 0 && t != table[i].want)
                        fail_msg("parse_time(\"%s\", %d) gave %lld, want %lld", table[i].s, table[i].bound,
                                 (long long) t, (long long) table[i].want);
                if (r != 0 && t != -1)
                        fail_msg("parse_time(\"%s\") wrote its result on failure", table[i].s);
        }
}

/* The end of a day is the next local midnight, also on a day of 23 hours. */
static void test_parse_time_dst(void **state)
{
        int64_t start = 0, end = 0, next = 0;

        set_tz(TZ_BERLIN);
        assert_int_equal(parse_time("2026-03-29", TIME_BOUND_START, &start), 0);
        assert_int_equal(parse_time("2026-03-29", TIME_BOUND_END, &end), 0);
        assert_int_equal(parse_time("2026-03-30", TIME_BOUND_START, &next), 0);
        assert_int_equal(start, 1774738800); /* 2026-03-28T23:00:00Z, CET */
        assert_int_equal(end, 1774821600);   /* 2026-03-29T22:00:00Z, CEST */
        assert_int_equal(end, next);
        assert_int_equal(end - start, 23 * 3600);
}

static void test_validity_check(void **state)
{
        static const struct {
                int64_t from, until, now;
                int r;
        } table[] = {
                { 0, 0, 1000, 0 },         /* from now on, no end */
                { 500, 0, 1000, 0 },       /* backdated start, no end */
                { 0, 1001, 1000, 0 },      /* from now until later */
                { 500, 2000, 1000, 0 },    /* backdated start, future end */
                { 1500, 2000, 1000, 0 },   /* future start and end */
                { 0, 1000, 1000, -ERANGE }, /* ends now */
                { 0, 999, 1000, -ERANGE },
                { 500, 900, 1000, -ERANGE }, /* over already */
                { 2000, 2000, 1000, -EINVAL },
                { 2000, 1500, 1000, -EINVAL },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int r = validity_check(table[i].from, table[i].until, table[i].now);

                if (r != table[i].r)
                        fail_msg("validity_check(%lld, %lld, %lld) = %d, want %d", (long long) table[i].from,
                                 (long long) table[i].until, (long long) table[i].now, r, table[i].r);
        }
}

static void test_custody_kind(void **state)
{
        assert_true(custody_kind_valid("organization"));
        assert_true(custody_kind_valid("personal"));
        assert_true(custody_kind_valid("device"));
        assert_false(custody_kind_valid("organisation"));
        assert_false(custody_kind_valid("Personal"));
        assert_false(custody_kind_valid(""));
        assert_false(custody_kind_valid(NULL));
}

static void test_holder_parse(void **state)
{
        static const struct {
                const char *s;
                bool ok, group;
                const char *name;
        } table[] = {
                { "nguyenvana", true, false, "nguyenvana" },
                { "@vanthu", true, true, "vanthu" },
                { "nguyen.van-a_1", true, false, "nguyen.van-a_1" },
                { "_svc", true, false, "_svc" },
                { "2fa-admins", true, false, "2fa-admins" },
                { "machine$", true, false, "machine$" },
                { "nguyenvana@tinh.gov.vn", true, false, "nguyenvana@tinh.gov.vn" }, /* SSSD names */
                { "@domain users", false },
                { "", false },
                { "@", false },
                { "@@vanthu", false },
                { "1000", false }, /* reads as a uid */
                { "@1000", false },
                { "-rf", false },
                { "@-x", false },
                { ".hidden", false },
                { "$x", false },
                { "a$b", false },
                { "$", false },
                { "nguyen van a", false },
                { "a:b", false },
                { "a/b", false },
                { "a\n", false },
                { "Nguy\xe1\xbb\x85n", false }, /* non-ASCII */
        };
        char long_name[HOLDER_NAME_MAX + 3];

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const char *name = NULL;
                bool group = false;
                int r = holder_parse(table[i].s, &name, &group);

                if (table[i].ok != (r == 0))
                        fail_msg("holder_parse(\"%s\") = %d", table[i].s, r);
                if (table[i].ok && (group != table[i].group || !name || strcmp(name, table[i].name) != 0))
                        fail_msg("holder_parse(\"%s\") gave %s%s", table[i].s, group ? "@" : "",
                                 name ? name : "(null)");
        }

        /* The length limit counts the name, not the '@'. */
        memset(long_name, 'a', sizeof(long_name));
        long_name[HOLDER_NAME_MAX] = '\0';
        assert_int_equal(holder_parse(long_name, NULL, NULL), 0);
        long_name[HOLDER_NAME_MAX] = 'a';
        long_name[HOLDER_NAME_MAX + 1] = '\0';
        assert_int_equal(holder_parse(long_name, NULL, NULL), -EINVAL);
        long_name[0] = '@';
        assert_int_equal(holder_parse(long_name, NULL, NULL), 0);
        assert_int_equal(holder_parse(NULL, NULL, NULL), -EINVAL);
}

static void test_utf8_valid(void **state)
{
        assert_true(utf8_valid(""));
        assert_true(utf8_valid("12/QD-UBND"));
        assert_true(utf8_valid("12/Q\xc4\x90-UBND"));      /* Đ */
        assert_true(utf8_valid("\xf0\x9f\x94\x91"));        /* U+1F511 */
        assert_false(utf8_valid("\xc3\x28"));               /* bad continuation */
        assert_false(utf8_valid("\xc0\xaf"));               /* overlong '/' */
        assert_false(utf8_valid("\xe0\x80\xaf"));           /* overlong '/' */
        assert_false(utf8_valid("\xed\xa0\x80"));           /* surrogate */
        assert_false(utf8_valid("\xf4\x90\x80\x80"));       /* past U+10FFFF */
        assert_false(utf8_valid("\xe1\xba"));               /* cut short */
        assert_false(utf8_valid("\xff"));
        assert_false(utf8_valid("latin1 caf\xe9"));
}

static void test_text_sanitize(void **state)
{
        static const struct {
                const char *in, *out;
        } table[] = {
                { "kyso-test", "kyso-test" },
                { "Nguy\xe1\xbb\x85n V\xc4\x83n A", "Nguy\xe1\xbb\x85n V\xc4\x83n A" },
                { "a\x1b]0;owned\x07z", "a?]0;owned?z" }, /* terminal escapes */
                { "a\x1b[31mb", "a?[31mb" },
                { "\xc2\x9b" "31m", "?31m" }, /* C1 CSI */
                { "tab\there", "tab?here" },
                { "new\nline", "new?line" },
                { "del\x7f", "del?" },
                { "bad\xff\xfe", "bad??" },
                { "cut\xe1\xba", "cut??" },
                { "", "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_(freep) char *s = text_sanitize(table[i].in);

                assert_non_null(s);
                assert_string_equal(s, table[i].out);
        }
        {
                _cleanup_(freep) char *s = text_sanitize(NULL);
                assert_string_equal(s, "");
        }
}

static void test_text_width(void **state)
{
        if (!setlocale(LC_CTYPE, "C.UTF-8"))
                skip();
        assert_int_equal(text_width("kyso"), 4);
        assert_int_equal(text_width("Nguy\xe1\xbb\x85n"), 6);      /* precomposed ễ */
        assert_int_equal(text_width("Nguye\xcc\x82\xcc\x83n"), 6); /* e + combining marks */
        assert_int_equal(text_width(""), 0);

        /* Without a UTF-8 locale: a column per code point. */
        setlocale(LC_CTYPE, "C");
        assert_int_equal(text_width("Nguy\xe1\xbb\x85n"), 6);
        assert_int_equal(text_width("kyso"), 4);
}

static void test_format_time(void **state)
{
        char buf[TIME_TEXT_MAX];

        set_tz(TZ_VIETNAM);
        assert_null(format_time_utc(0, buf, sizeof(buf)));
        assert_string_equal(format_time_utc(1767571200, buf, sizeof(buf)), "2026-01-05T00:00:00Z");
        assert_string_equal(format_time_utc(1767598215, buf, sizeof(buf)), "2026-01-05T07:30:15Z");
        assert_null(format_time_utc(INT64_C(999999999999), buf, sizeof(buf))); /* year 33658 */

        assert_string_equal(format_time_local(0, buf, sizeof(buf)), "-");
        assert_string_equal(format_time_local(1767571200, buf, sizeof(buf)), "2026-01-05 07:00:00 ICT");
}

/* What "kysoctl tokens" shows as VALID UNTIL is what the administrator gave "assign --until". */
static void test_format_bound(void **state)
{
        static const char *const dates[] = { "2026-01-05", "2026-12-31", "2024-02-28", "2024-02-29" };
        static const char *const tzs[] = { TZ_VIETNAM, TZ_BERLIN };
        char buf[TIME_TEXT_MAX];

        for (size_t z = 0; z < ELEMENTSOF(tzs); z++) {
                set_tz(tzs[z]);
                for (size_t i = 0; i < ELEMENTSOF(dates); i++) {
                        int64_t t;

                        assert_int_equal(parse_time(dates[i], TIME_BOUND_END, &t), 0);
                        format_bound_local(t, TIME_BOUND_END, buf, sizeof(buf));
                        assert_string_equal(buf, dates[i]);
                        assert_int_equal(parse_time(dates[i], TIME_BOUND_START, &t), 0);
                        format_bound_local(t, TIME_BOUND_START, buf, sizeof(buf));
                        assert_string_equal(buf, dates[i]);
                }
        }

        set_tz(TZ_BERLIN);
        {
                int64_t t;

                /* The end of the 23-hour day is still shown as that day. */
                assert_int_equal(parse_time("2026-03-29", TIME_BOUND_END, &t), 0);
                assert_string_equal(format_bound_local(t, TIME_BOUND_END, buf, sizeof(buf)), "2026-03-29");
        }

        set_tz(TZ_VIETNAM);
        assert_string_equal(format_bound_local(0, TIME_BOUND_END, buf, sizeof(buf)), "-");
        format_bound_local(1767598200, TIME_BOUND_END, buf, sizeof(buf));
        assert_string_equal(buf, "2026-01-05 14:30");
        assert_string_equal(format_bound_local(1767598215, TIME_BOUND_START, buf, sizeof(buf)),
                            "2026-01-05 14:30:15");
}

/* kysod's report and audit times: RFC 3339, as format_time_utc() writes them and Import takes them. */
static void test_parse_rfc3339(void **state)
{
        static const struct {
                const char *s;
                int r;
                int64_t t;
        } table[] = {
                { "2026-01-05T00:00:00Z", 0, 1767571200 },
                { "2026-01-05T07:30:15Z", 0, 1767598215 },
                { "2026-01-05T14:30:15+07:00", 0, 1767598215 },
                { "2026-01-04T23:30:15-08:00", 0, 1767598215 },
                { "2026-01-05t07:30:15z", 0, 1767598215 },
                { "2026-01-05T07:30:15.123456Z", 0, 1767598215 }, /* the fraction is dropped */
                { "1970-01-01T00:00:00Z", 0, 0 },
                { "2024-02-29T12:00:00Z", 0, 1709208000 },
                { "2000-03-01T00:00:00Z", 0, 951868800 },
                { "2026-01-05T00:00:00", -EINVAL },     /* no zone */
                { "2026-01-05 00:00:00Z", -EINVAL },    /* a blank, not T */
                { "2026-01-05T24:00:00Z", -EINVAL },
                { "2026-01-05T00:60:00Z", -EINVAL },
                { "2026-02-30T00:00:00Z", -EINVAL },
                { "2026-01-05T00:00:00+0700", -EINVAL },
                { "2026-01-05T00:00:00+07:00x", -EINVAL },
                { "2026-01-05T00:00:00.Z", -EINVAL },
                { "2026-01-05T00:00Z", -EINVAL },
                { "2026-01-05", -EINVAL },
                { "", -EINVAL },
        };
        char buf[TIME_TEXT_MAX];

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int64_t t = -1;
                int r = parse_rfc3339(table[i].s, &t);

                if (r != table[i].r)
                        fail_msg("parse_rfc3339(\"%s\") = %d", table[i].s, r);
                if (r == 0 && t != table[i].t)
                        fail_msg("parse_rfc3339(\"%s\") gave %lld", table[i].s, (long long) t);
                if (r < 0 && t != -1)
                        fail_msg("parse_rfc3339(\"%s\") wrote its result on failure", table[i].s);
        }
        assert_int_equal(parse_rfc3339(NULL, &(int64_t) { 0 }), -EINVAL);

        /* What format_time_utc() writes reads back, whatever the zone of the process. */
        set_tz(TZ_BERLIN);
        for (int64_t t = 1; t < INT64_C(4102444800); t += INT64_C(7777777)) {
                int64_t back;

                assert_non_null(format_time_utc(t, buf, sizeof(buf)));
                assert_int_equal(parse_rfc3339(buf, &back), 0);
                assert_int_equal(back, t);
        }
}

static void test_format_plain(void **state)
{
        char buf[TIME_TEXT_MAX];

        set_tz(TZ_VIETNAM);
        assert_string_equal(format_time_plain(0, buf, sizeof(buf)), "");
        assert_string_equal(format_time_plain(1767571200, buf, sizeof(buf)), "2026-01-05 07:00:00");
        assert_string_equal(format_time_plain(1767598215, buf, sizeof(buf)), "2026-01-05 14:30:15");
        assert_string_equal(format_date_local(0, buf, sizeof(buf)), "-");
        assert_string_equal(format_date_local(1767571200, buf, sizeof(buf)), "2026-01-05");
        assert_string_equal(format_date_local(1767628799, buf, sizeof(buf)), "2026-01-05"); /* 23:59:59 */
        set_tz(TZ_BERLIN);
        assert_string_equal(format_time_plain(1767598215, buf, sizeof(buf)), "2026-01-05 08:30:15");
        assert_string_equal(format_date_local(1767571200, buf, sizeof(buf)), "2026-01-05");
}

/*
 * An RFC 4180 reader for one row, to check that what csv_field_append() writes reads back as the
 * fields it was given: returns the number of fields, copies field k to ret (size bytes).
 */
static size_t csv_read_field(const char *row, size_t k, char *ret, size_t size)
{
        size_t field = 0, n = 0;
        const char *p = row;

        for (;;) {
                bool quoted = *p == '"';

                n = 0;
                if (quoted) {
                        for (p++;; p++) {
                                assert_true(*p != '\0'); /* an unterminated quote */
                                if (*p == '"' && p[1] == '"')
                                        p++;
                                else if (*p == '"') {
                                        p++;
                                        break;
                                }
                                if (field == k && n + 1 < size)
                                        ret[n++] = *p;
                        }
                } else
                        for (; *p && *p != ',' && *p != '\r' && *p != '\n'; p++) {
                                assert_true(*p != '"'); /* a bare quote needed quoting */
                                if (field == k && n + 1 < size)
                                        ret[n++] = *p;
                        }
                if (field == k)
                        ret[n] = '\0';
                field++;
                if (*p == ',') {
                        p++;
                        continue;
                }
                assert_true(p[0] == '\r' && p[1] == '\n' && p[2] == '\0'); /* the row ends in CRLF */
                return field;
        }
}

static void test_csv_field(void **state)
{
        static const struct {
                const char *in, *out;
        } table[] = {
                { "kyso-test", "kyso-test" },
                { "", "" },
                { NULL, "" },
                { "Nguy\xe1\xbb\x85n V\xc4\x83n A", "Nguy\xe1\xbb\x85n V\xc4\x83n A" }, /* UTF-8 as it is */
                { "12/Q\xc4\x90-UBND", "12/Q\xc4\x90-UBND" },
                { "CN=Nguy\xe1\xbb\x85n V\xc4\x83n A, O=UBND T\xe1\xbb\x89nh",
                  "\"CN=Nguy\xe1\xbb\x85n V\xc4\x83n A, O=UBND T\xe1\xbb\x89nh\"" },
                { "a,b", "\"a,b\"" },
                { "say \"hi\"", "\"say \"\"hi\"\"\"" },
                { "\"", "\"\"\"\"" },
                { "line1\nline2", "\"line1\nline2\"" },
                { "line1\r\nline2", "\"line1\r\nline2\"" },
                { "cr\r", "\"cr\r\"" },
                { " padded ", " padded " },
                { "semi;colon", "semi;colon" },
                { "2026-01-05 07:00:00", "2026-01-05 07:00:00" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                TextBuffer b = {};
                char back[256];

                csv_field_append(&b, table[i].in, true);
                assert_false(b.failed);
                if (!b.data) /* nothing appended: an empty field */
                        assert_string_equal(table[i].out, "");
                else
                        assert_string_equal(b.data, table[i].out);

                /* As a row between two others, it reads back as itself. */
                text_buffer_done(&b);
                csv_field_append(&b, "before", true);
                csv_field_append(&b, table[i].in, false);
                csv_field_append(&b, "after", false);
                csv_row_end(&b);
                assert_false(b.failed);
                assert_int_equal(csv_read_field(b.data, 1, back, sizeof(back)), 3);
                assert_string_equal(back, table[i].in ? table[i].in : "");
                assert_int_equal(csv_read_field(b.data, 2, back, sizeof(back)), 3);
                assert_string_equal(back, "after");
                text_buffer_done(&b);
        }
}

static void test_csv_row(void **state)
{
        TextBuffer b = {};

        text_buffer_append(&b, CSV_BOM, strlen(CSV_BOM));
        csv_field_append(&b, "serial", true);
        csv_field_append(&b, "label", false);
        csv_row_end(&b);
        csv_field_append(&b, "", true); /* a row of empty fields is still two fields */
        csv_field_append(&b, NULL, false);
        csv_row_end(&b);
        csv_field_append(&b, "0a1b", true);
        csv_field_append(&b, "Ch\xe1\xbb\xaf k\xc3\xbd s\xe1\xbb\x91, \"VP\"", false);
        csv_row_end(&b);
        assert_false(b.failed);
        assert_int_equal(b.len, strlen(b.data));
        assert_string_equal(b.data, "\xef\xbb\xbf"
                                    "serial,label\r\n"
                                    ",\r\n"
                                    "0a1b,\"Ch\xe1\xbb\xaf k\xc3\xbd s\xe1\xbb\x91, \"\"VP\"\"\"\r\n");
        text_buffer_done(&b);
        assert_null(b.data);
        assert_int_equal(b.len, 0);

        /* A buffer that failed stays failed, and appends nothing more. */
        b.failed = true;
        csv_field_append(&b, "x", true);
        assert_null(b.data);
        assert_int_equal(b.len, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_date),       cmocka_unit_test(test_parse_time),
                cmocka_unit_test(test_parse_time_dst),   cmocka_unit_test(test_validity_check),
                cmocka_unit_test(test_custody_kind),     cmocka_unit_test(test_holder_parse),
                cmocka_unit_test(test_utf8_valid),       cmocka_unit_test(test_text_sanitize),
                cmocka_unit_test(test_text_width),       cmocka_unit_test(test_format_time),
                cmocka_unit_test(test_format_bound),     cmocka_unit_test(test_parse_rfc3339),
                cmocka_unit_test(test_format_plain),     cmocka_unit_test(test_csv_field),
                cmocka_unit_test(test_csv_row),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
