/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The registry as JSON, for `kysoctl export` / `kysoctl import` (the format
 * is in data/org.kyso1.xml, Manager.Export), and the validation of custody
 * records, wherever they come from. Pure: no I/O, no globals, so the
 * importer's validation has table tests and a fuzz target.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define CUSTODY_JSON_FORMAT "kyso-registry"
#define CUSTODY_JSON_VERSION 1
/* An import larger than this is refused before parsing. */
#define CUSTODY_JSON_MAX (16U * 1024U * 1024U)
#define CUSTODY_JSON_RECORDS_MAX 100000U

/* "YYYY-MM-DD" naming a real day of the Gregorian calendar. */
bool custody_date_valid(const char *s);

/*
 * Checks what an admin may set in a record (serial, kind, holder, decision,
 * dates, validity window, state, text lengths). NULL if it is valid, else a
 * static message naming the field.
 */
const char *custody_record_invalid(const CustodyRecord *r);

/* Unix seconds as RFC 3339 UTC ("2026-11-30T08:00:00Z"); buf of at least 21 bytes. */
void custody_time_format(int64_t t, char *buf, size_t size);
/* The time as a JSON string in that form, or JSON null (NULL) for 0. */
struct json_object *custody_time_json(int64_t t);
/* RFC 3339 with "Z" or a "+HH:MM"/"-HH:MM" offset; -EINVAL if not. */
int custody_time_parse(const char *s, int64_t *ret);

/* The records as an export document; *ret is malloc()ed. */
int custody_json_export(const CustodyRecord *recs, size_t n, int64_t now, char **ret);

/*
 * Parses and validates a whole export document. On success *ret holds the
 * records (free with custody_records_free()). On -EINVAL *ret_error (may be
 * NULL) gets a malloc()ed message naming the first bad record and field.
 */
int custody_json_parse(const char *text, size_t len, CustodyRecord **ret, size_t *ret_n, char **ret_error);
