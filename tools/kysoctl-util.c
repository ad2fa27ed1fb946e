/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "kysoctl-util.h"
#include "macro.h"

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

/* Exactly n decimal digits at s, no sign, no blanks. */
static bool read_digits(const char *s, size_t n, int *ret)
{
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return true;
}

static int days_in_month(int year, int month)
{
        static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

        return month == 2 && leap ? 29 : days[month - 1];
}

/* The date at the start of s, which must be followed by NUL or 'T'. */
static int parse_date_prefix(const char *s, int *ret_year, int *ret_month, int *ret_day)
{
        int y, m, d;

        if (!read_digits(s, 4, &y) || s[4] != '-' || !read_digits(s + 5, 2, &m) || s[7] != '-' ||
            !read_digits(s + 8, 2, &d))
                return -EINVAL;
        if (y < 1900 || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
                return -EINVAL;
        *ret_year = y;
        *ret_month = m;
        *ret_day = d;
        return 0;
}

int parse_date(const char *s, int *ret_year, int *ret_month, int *ret_day)
{
        int y, m, d, r;

        if (!s || strlen(s) != 10)
                return -EINVAL;
        r = parse_date_prefix(s, &y, &m, &d);
        if (r < 0)
                return r;
        *ret_year = y;
        *ret_month = m;
        *ret_day = d;
        return 0;
}

static int parse_unix_seconds(const char *s, int64_t *ret)
{
        int64_t v = 0;

        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                if (!is_digit(*s))
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v))
                        return -ERANGE;
        }
        if (v == 0)
                return -EINVAL; /* 0 means "none" on the bus */
        if ((int64_t) (time_t) v != v)
                return -ERANGE;
        *ret = v;
        return 0;
}

int parse_time(const char *s, TimeBound bound, int64_t *ret)
{
        struct tm tm = { .tm_isdst = -1 };
        int y, mo, d, h = 0, mi = 0, sec = 0, r;
        size_t len;
        time_t t;

        if (!s)
                return -EINVAL;
        if (s[0] == '@')
                return parse_unix_seconds(s + 1, ret);

        len = strlen(s);
        if (len != 10 && len != 16 && len != 19)
                return -EINVAL;
        r = parse_date_prefix(s, &y, &mo, &d);
        if (r < 0)
                return r;
        if (len > 10) {
                if (s[10] != 'T' || !read_digits(s + 11, 2, &h) || s[13] != ':' ||
                    !read_digits(s + 14, 2, &mi))
                        return -EINVAL;
                if (len == 19 && (s[16] != ':' || !read_digits(s + 17, 2, &sec)))
                        return -EINVAL;
                if (h > 23 || mi > 59 || sec > 59)
                        return -EINVAL;
        }

        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        /* The end of a day is the start of the next; mktime() carries into the month and year. */
        tm.tm_mday = d + (len == 10 && bound == TIME_BOUND_END ? 1 : 0);
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        t = mktime(&tm);
        /* mktime() fails with -1; 0 and earlier cannot travel either, as 0 means "none" on the bus. */
        if (t <= 0)
                return -ERANGE;
        *ret = (int64_t) t;
        return 0;
}

int validity_check(int64_t from, int64_t until, int64_t now)
{
        if (until == 0)
                return 0;
        if (from != 0 && until <= from)
                return -EINVAL;
        if (until <= now)
                return -ERANGE;
        return 0;
}

bool custody_kind_valid(const char *s)
{
        return s && (streq(s, "organization") || streq(s, "personal") || streq(s, "device"));
}

static bool name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '.' ||
               c == '-';
}

int holder_parse(const char *s, const char **ret_name, bool *ret_group)
{
        bool group, all_digits = true;
        const char *name;
        size_t len;

        if (!s)
                return -EINVAL;
        group = s[0] == '@';
        name = group ? s + 1 : s;
        len = strlen(name);
        if (len == 0 || len > HOLDER_NAME_MAX)
                return -EINVAL;
        /* A leading '-' would read as an option to the tools an administrator checks names with. */
        if (!name_char(name[0]) || name[0] == '-' || name[0] == '.')
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                char c = name[i];

                if (!is_digit(c))
                        all_digits = false;
                if (name_char(c) || (c == '@' && i > 0) || (c == '$' && i == len - 1 && i > 0))
                        continue;
                return -EINVAL;
        }
        if (all_digits)
                return -EINVAL;
        if (ret_name)
                *ret_name = name;
        if (ret_group)
                *ret_group = group;
        return 0;
}

/* The length of the UTF-8 sequence at s (1..4) and its code point, or 0 when it is not valid UTF-8. */
static size_t utf8_decode(const unsigned char *s, uint32_t *ret)
{
        uint32_t c = s[0], min;
        size_t n;

        if (c < 0x80) {
                *ret = c;
                return 1;
        }
        if ((c & 0xe0) == 0xc0) {
                n = 2;
                c &= 0x1f;
                min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
                n = 3;
                c &= 0x0f;
                min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
                n = 4;
                c &= 0x07;
                min = 0x10000;
        } else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
                        return 0;
                c = (c << 6) | (s[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        *ret = c;
        return n;
}

bool utf8_valid(const char *s)
{
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                uint32_t c;
                size_t n = utf8_decode(p, &c);

                if (n == 0)
                        return false;
                p += n;
        }
        return true;
}

char *text_sanitize(const char *s)
{
        const unsigned char *p;
        char *out, *q;

        if (!s)
                s = "";
        /* Never longer than the input: a replaced sequence becomes one '?'. */
        out = malloc(strlen(s) + 1);
        if (!out)
                return NULL;
        for (p = (const unsigned char *) s, q = out; *p;) {
                uint32_t c;
                size_t n = utf8_decode(p, &c);

                if (n == 0) {
                        *q++ = '?';
                        p++;
                        continue;
                }
                if (c < 0x20 || (c >= 0x7f && c < 0xa0))
                        *q++ = '?';
                else {
                        memcpy(q, p, n);
                        q += n;
                }
                p += n;
        }
        *q = '\0';
        return out;
}

size_t text_width(const char *s)
{
        mbstate_t st = {};
        size_t width = 0, left = strlen(s);
        const char *p = s;
        bool locale_ok = true;

        while (left > 0) {
                wchar_t wc;
                size_t n = mbrtowc(&wc, p, left, &st);
                int w;

                if (n == (size_t) -1 || n == (size_t) -2 || n == 0) {
                        locale_ok = false;
                        break;
                }
                w = wcwidth(wc);
                width += w > 0 ? (size_t) w : 0;
                p += n;
                left -= n;
        }
        if (locale_ok)
                return width;

        /* Not a UTF-8 locale: one column per code point is the best guess. */
        width = 0;
        for (p = s; *p; p++)
                if (((unsigned char) *p & 0xc0) != 0x80)
                        width++;
        return width;
}

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

int parse_rfc3339(const char *s, int64_t *ret)
{
        int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0, r;
        const char *p;

        if (!s || strlen(s) < 20)
                return -EINVAL;
        r = parse_date_prefix(s, &y, &mo, &d);
        if (r < 0)
                return r;
        if ((s[10] != 'T' && s[10] != 't') || !read_digits(s + 11, 2, &h) || s[13] != ':' ||
            !read_digits(s + 14, 2, &mi) || s[16] != ':' || !read_digits(s + 17, 2, &sec))
                return -EINVAL;
        if (h > 23 || mi > 59 || sec > 60) /* 60: a leap second */
                return -EINVAL;
        p = s + 19;
        if (*p == '.') {
                if (!is_digit(p[1]))
                        return -EINVAL;
                for (p++; is_digit(*p); p++)
                        ;
        }
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                sign = *p == '-' ? -1 : 1;
                if (!read_digits(p + 1, 2, &oh) || p[3] != ':' || !read_digits(p + 4, 2, &om) || oh > 23 ||
                    om > 59)
                        return -EINVAL;
                p += 6;
        } else
                return -EINVAL;
        if (*p)
                return -EINVAL;

        *ret = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
        return 0;
}

const char *format_time_utc(int64_t t, char *buf, size_t size)
{
        time_t tt = (time_t) t;
        struct tm tm;

        if (t == 0 || (int64_t) tt != t || !gmtime_r(&tt, &tm))
                return NULL;
        if (tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) /* RFC 3339 has four-digit years */
                return NULL;
        if (strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return NULL;
        return buf;
}

static bool local_tm(int64_t t, struct tm *ret)
{
        time_t tt = (time_t) t;

        return (int64_t) tt == t && localtime_r(&tt, ret);
}

const char *format_time_local(int64_t t, char *buf, size_t size)
{
        struct tm tm;

        if (t == 0)
                snprintf(buf, size, "-");
        else if (!local_tm(t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                snprintf(buf, size, "@%" PRId64, t);
        return buf;
}

const char *format_time_plain(int64_t t, char *buf, size_t size)
{
        struct tm tm;

        if (t == 0)
                snprintf(buf, size, "%s", "");
        else if (!local_tm(t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "@%" PRId64, t);
        return buf;
}

const char *format_date_local(int64_t t, char *buf, size_t size)
{
        struct tm tm;

        if (t == 0)
                snprintf(buf, size, "-");
        else if (!local_tm(t, &tm) || strftime(buf, size, "%Y-%m-%d", &tm) == 0)
                snprintf(buf, size, "@%" PRId64, t);
        return buf;
}

const char *format_bound_local(int64_t t, TimeBound bound, char *buf, size_t size)
{
        struct tm tm;
        size_t n;

        if (t == 0) {
                snprintf(buf, size, "-");
                return buf;
        }
        if (!local_tm(t, &tm))
                n = 0;
        else if (tm.tm_hour == 0 && tm.tm_min == 0 && tm.tm_sec == 0) {
                /* A second before the end of a day is still that day, whatever the clocks did. */
                if (bound == TIME_BOUND_END && !local_tm(t - 1, &tm))
                        n = 0;
                else
                        n = strftime(buf, size, "%Y-%m-%d", &tm);
        } else if (tm.tm_sec == 0)
                n = strftime(buf, size, "%Y-%m-%d %H:%M", &tm);
        else
                n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
        if (n == 0)
                snprintf(buf, size, "@%" PRId64, t);
        return buf;
}

int write_full(int fd, const void *p, size_t n)
{
        const uint8_t *b = p;

        while (n > 0) {
                ssize_t k = write(fd, b, n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno > 0 ? -errno : -EIO;
                }
                b += k;
                n -= (size_t) k;
        }
        return 0;
}

void text_buffer_append(TextBuffer *b, const char *s, size_t n)
{
        size_t need;

        if (b->failed)
                return;
        if (size_add_overflow(b->len, n + 1, &need)) {
                b->failed = true;
                return;
        }
        if (need > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                char *p;

                while (cap < need)
                        if (size_mul_overflow(cap, 2, &cap)) {
                                b->failed = true;
                                return;
                        }
                p = realloc(b->data, cap);
                if (!p) {
                        b->failed = true;
                        return;
                }
                b->data = p;
                b->cap = cap;
        }
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
}

void text_buffer_done(TextBuffer *b)
{
        free(b->data);
        *b = (TextBuffer) {};
}

void csv_field_append(TextBuffer *b, const char *field, bool first)
{
        if (!first)
                text_buffer_append(b, ",", 1);
        if (!field)
                return;
        if (!strpbrk(field, ",\"\r\n")) {
                text_buffer_append(b, field, strlen(field));
                return;
        }
        text_buffer_append(b, "\"", 1);
        for (const char *p = field; *p;) {
                const char *q = strchr(p, '"');
                size_t n = q ? (size_t) (q - p) + 1 : strlen(p);

                text_buffer_append(b, p, n); /* up to and including a quote, */
                if (q)
                        text_buffer_append(b, "\"", 1); /* which is doubled */
                p += n;
        }
        text_buffer_append(b, "\"", 1);
}

void csv_row_end(TextBuffer *b)
{
        text_buffer_append(b, "\r\n", 2);
}
