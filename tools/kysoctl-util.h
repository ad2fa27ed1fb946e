/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysoctl's pure helpers: parsing what an administrator types (dates,
 * times, holders, custody kinds) and formatting what kysod sends back
 * (times, text for a terminal, CSV for a spreadsheet). No I/O and no
 * logging, so the unit test links them alone; the callers turn a -errno
 * into a message.
 *
 * Local time is the TZ of the process (the machine's zone unless TZ is
 * set): an administrator types dates as they read them on the written
 * decision, and kysod stores Unix seconds.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest user or group name accepted (glibc's LOGIN_NAME_MAX less the NUL). */
#define HOLDER_NAME_MAX 255

/* Room for any string the format_ functions write. */
#define TIME_TEXT_MAX 64

typedef enum TimeBound {
        TIME_BOUND_START, /* a bare date means 00:00:00 of that day */
        TIME_BOUND_END,   /* a bare date means the end of that day: 00:00:00 of the next */
} TimeBound;

/* "YYYY-MM-DD", a real calendar date (year 1900..9999). -EINVAL otherwise. */
int parse_date(const char *s, int *ret_year, int *ret_month, int *ret_day);

/*
 * A point in time as Unix seconds, from
 *   YYYY-MM-DD             local midnight at the start (TIME_BOUND_START) or end of that day
 *   YYYY-MM-DDTHH:MM[:SS]  local time
 *   @SECONDS               Unix seconds, > 0
 * -EINVAL for bad syntax or an impossible date or time, -ERANGE when it cannot be represented.
 */
int parse_time(const char *s, TimeBound bound, int64_t *ret);

/*
 * A custody validity period, as "kysoctl assign" may request it: until == 0 means no end,
 * from == 0 means "from now". -EINVAL when until is not after from, -ERANGE when until is
 * not after now.
 */
int validity_check(int64_t from, int64_t until, int64_t now);

/* "organization", "personal" or "device". */
bool custody_kind_valid(const char *s);

/*
 * A holder: a user name, or a group name after '@'. Names are letters, digits, '_', '.',
 * '-', and '@' after the first character, optionally ending in '$'; not only digits (that
 * reads as a uid); at most HOLDER_NAME_MAX bytes. Returns 0 and, when ret_name is not NULL,
 * the name inside s; -EINVAL otherwise.
 */
int holder_parse(const char *s, const char **ret_name, bool *ret_group);

/* Whether s is valid UTF-8 without surrogates or code points past U+10FFFF (as D-Bus demands). */
bool utf8_valid(const char *s);

/*
 * A copy of s safe to print on a terminal: control characters (C0, DEL, C1) and bytes that are
 * not UTF-8 become '?'. NULL becomes "". NULL when out of memory.
 */
char *text_sanitize(const char *s);

/* Columns s takes on a terminal in the current LC_CTYPE; counts code points without a UTF-8 locale. */
size_t text_width(const char *s);

/*
 * An RFC 3339 time as kysod writes them ("2026-01-05T00:00:00Z"; an offset "+07:00" and a
 * fraction of a second, dropped, are taken too) as Unix seconds. -EINVAL otherwise.
 */
int parse_rfc3339(const char *s, int64_t *ret);

/* "2026-01-05T00:00:00Z" into buf (TIME_TEXT_MAX bytes); NULL for 0 ("none") or a time out of its range. */
const char *format_time_utc(int64_t t, char *buf, size_t size);

/* "2026-01-05 14:30:00 +07" in local time; "-" for 0. Returns buf. */
const char *format_time_local(int64_t t, char *buf, size_t size);

/* "2026-01-05 14:30:00" in local time, for tables and spreadsheets; "" for 0. Returns buf. */
const char *format_time_plain(int64_t t, char *buf, size_t size);

/* "2026-01-05", the local date; "-" for 0. Returns buf. */
const char *format_date_local(int64_t t, char *buf, size_t size);

/*
 * A bound of a validity period the way "kysoctl assign" takes it: a local midnight as a bare
 * date (for TIME_BOUND_END the day that ends there), so parse_time() of that date with the same
 * bound gives t back; any other time as "YYYY-MM-DD HH:MM[:SS]"; "-" for 0. Returns buf.
 */
const char *format_bound_local(int64_t t, TimeBound bound, char *buf, size_t size);

/* Writes all n bytes (a file or a socket; kysoctl ignores SIGPIPE), retrying on EINTR. 0 or -errno. */
int write_full(int fd, const void *p, size_t n);

/*
 * Text that grows as it is appended to. A failed allocation sets the sticky flag failed and
 * later appends do nothing, so a writer appends everything and checks once at the end. data
 * is NUL-terminated unless failed.
 */
typedef struct TextBuffer {
        char *data;
        size_t len;
        size_t cap;
        bool failed;
} TextBuffer;

void text_buffer_append(TextBuffer *b, const char *s, size_t n);
void text_buffer_done(TextBuffer *b);

/*
 * CSV as RFC 4180 has it, for spreadsheets: a file starts with CSV_BOM (LibreOffice Calc and
 * Excel then read the text as UTF-8), fields are separated by commas, rows end in CRLF.
 * csv_field_append() writes field (NULL: an empty one) after a comma unless first; a field
 * holding a comma, a double quote, CR or LF is put in double quotes, its quotes doubled.
 * Anything else, UTF-8 included, goes out as it is.
 */
#define CSV_BOM "\xef\xbb\xbf"
void csv_field_append(TextBuffer *b, const char *field, bool first);
void csv_row_end(TextBuffer *b);
