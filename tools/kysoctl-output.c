/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kysoctl-output.h"
#include "kysoctl-util.h"
#include "kysoctl.h"
#include "log.h"
#include "macro.h"

int output_json(json_object *o)
{
        const char *s = o ? json_object_to_json_string_ext(o, OUTPUT_JSON_FLAGS) : NULL;
        int r = EXIT_OK;

        if (!s) {
                log_oom();
                r = EXIT_FAILED;
        } else
                printf("%s\n", s);
        json_object_put(o);
        return r;
}

int output_flush(void)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                log_error_errno(errno, "Failed to write the output: %m");
                return EXIT_FAILED;
        }
        return EXIT_OK;
}

void table_init(Table *t, const char *const *header, size_t n_cols)
{
        *t = (Table) { .header = header, .n_cols = n_cols };
}

void table_add(Table *t, const char *cell)
{
        char *s;

        if (t->failed)
                return;
        if (t->n_cells == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 64;
                char **p = reallocarray(t->cells, cap, sizeof(char *));

                if (!p) {
                        t->failed = true;
                        return;
                }
                t->cells = p;
                t->cap = cap;
        }
        s = text_sanitize(cell && *cell ? cell : "-");
        if (!s) {
                t->failed = true;
                return;
        }
        t->cells[t->n_cells++] = s;
}

void table_done(Table *t)
{
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        *t = (Table) {};
}

static void print_padded(const char *s, size_t width, bool last)
{
        fputs(s, stdout);
        if (last)
                return;
        for (size_t w = text_width(s); w < width + 2; w++)
                putchar(' ');
}

int table_print(Table *t)
{
        _cleanup_(freep) size_t *width = NULL;
        size_t n_rows;

        if (t->failed || t->n_cols == 0 || !(width = calloc(t->n_cols, sizeof(size_t)))) {
                table_done(t);
                log_oom();
                return EXIT_FAILED;
        }
        n_rows = t->n_cells / t->n_cols; /* a row left incomplete is not printed */
        for (size_t c = 0; c < t->n_cols; c++) {
                width[c] = text_width(t->header[c]);
                for (size_t i = 0; i < n_rows; i++) {
                        size_t w = text_width(t->cells[i * t->n_cols + c]);
                        width[c] = w > width[c] ? w : width[c];
                }
        }
        for (size_t c = 0; c < t->n_cols; c++)
                print_padded(t->header[c], width[c], c == t->n_cols - 1);
        putchar('\n');
        for (size_t i = 0; i < n_rows; i++) {
                for (size_t c = 0; c < t->n_cols; c++)
                        print_padded(t->cells[i * t->n_cols + c], width[c], c == t->n_cols - 1);
                putchar('\n');
        }
        table_done(t);
        return EXIT_OK;
}

/*
 * A path.tmp left behind by an earlier run is replaced; one that cannot be removed (another
 * user's, in a sticky directory) makes this fail rather than write through it.
 */
int write_file_atomic(const char *path, const char *data, size_t len)
{
        _cleanup_(freep) char *tmp = NULL;
        _cleanup_(closep) int fd = -1;
        int r;

        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return log_oom();
        (void) unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0)
                return log_error_errno(errno, "Cannot create %s: %m", tmp);
        r = write_full(fd, data, len);
        if (r >= 0 && fsync(fd) < 0)
                r = negative_errno();
        if (r >= 0 && close(TAKE_FD(fd)) < 0)
                r = negative_errno();
        if (r >= 0 && rename(tmp, path) < 0)
                r = negative_errno();
        if (r < 0) {
                (void) unlink(tmp);
                return log_error_errno(r, "Cannot write %s: %m (it is unchanged).", path);
        }
        return 0;
}

/* "line L, column C" of byte offset off in text. */
static void text_position(const char *text, size_t off, size_t *ret_line, size_t *ret_col)
{
        size_t line = 1, col = 1;

        for (size_t i = 0; i < off && text[i]; i++) {
                if (text[i] == '\n') {
                        line++;
                        col = 1;
                } else if (((unsigned char) text[i] & 0xc0) != 0x80)
                        col++;
        }
        *ret_line = line;
        *ret_col = col;
}

json_object *json_parse_document(const char *text, size_t len, const char *name)
{
        json_tokener *tok = json_tokener_new();
        enum json_tokener_error err;
        json_object *o;
        size_t end, line, col;

        if (!tok) {
                log_oom();
                return NULL;
        }
        if (len > INT32_MAX) {
                json_tokener_free(tok);
                log_error("%s is too large.", name);
                return NULL;
        }
        /* JSON as RFC 8259 has it: json-c would let a trailing comma pass, another reader may not. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, text, (int) len);
        err = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

        if (!o || err != json_tokener_success) {
                json_object_put(o);
                if (err == json_tokener_continue) {
                        log_error("%s is not valid JSON: it ends in the middle of the document.", name);
                        return NULL;
                }
                text_position(text, end, &line, &col);
                log_error("%s is not valid JSON: %s at line %zu, column %zu.", name,
                          json_tokener_error_desc(err), line, col);
                return NULL;
        }
        for (size_t i = end; i < len; i++)
                if (!strchr(" \t\r\n", text[i])) {
                        json_object_put(o);
                        text_position(text, i, &line, &col);
                        log_error("%s is not valid JSON: more text after the document at line %zu, "
                                  "column %zu.",
                                  name, line, col);
                        return NULL;
                }
        return o;
}
