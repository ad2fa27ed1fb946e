/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * How kysoctl prints and writes what it got: JSON as "kysoctl status --json"
 * always has, tables padded for the terminal's locale with every cell made
 * safe to print (labels and holders come from tokens and administrators),
 * files written whole or not at all, and JSON documents from kysod parsed
 * with a message that says where they are broken. These functions log; a
 * command returns what they return.
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* How kysoctl prints JSON: as "kysoctl status --json" always has. */
#define OUTPUT_JSON_FLAGS                                                                                  \
        (JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE)

/* Prints o with OUTPUT_JSON_FLAGS and frees it; an exit status. NULL is out of memory. */
int output_json(json_object *o);
/* Flushes standard output: EXIT_OK, or EXIT_FAILED (logged) when it could not be written. */
int output_flush(void);

/*
 * A table of text: cells are added row by row, each copied through text_sanitize(); a failed
 * allocation is remembered and reported once, by table_print().
 */
typedef struct Table {
        const char *const *header;
        size_t n_cols;
        char **cells;
        size_t n_cells;
        size_t cap;
        bool failed;
} Table;

void table_init(Table *t, const char *const *header, size_t n_cols);
/* Adds the next cell; NULL or "" shows as "-". */
void table_add(Table *t, const char *cell);
/*
 * Prints the header and the rows, each column padded to its widest cell (in terminal columns),
 * the last one unpadded, then frees the cells. EXIT_OK, or EXIT_FAILED (logged).
 */
int table_print(Table *t);
void table_done(Table *t);

/*
 * Writes path.tmp and renames it over path, so that path is either the old file or the whole
 * new one. 0, or -errno (logged: "Cannot write PATH: ... (it is unchanged)").
 */
int write_file_atomic(const char *path, const char *data, size_t len);

/*
 * Parses a whole JSON document (RFC 8259, nothing after it); on failure logs where and why,
 * naming it as name, and returns NULL.
 */
json_object *json_parse_document(const char *text, size_t len, const char *name);
