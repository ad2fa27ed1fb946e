/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * "kysoctl export" and "kysoctl import": the custody registry as a JSON
 * document, the way configuration management moves it between machines.
 * kysod makes and checks the document; kysoctl only makes sure that what it
 * writes is whole and that what it sends is JSON at all, so a wrong file
 * gets a message with a line number instead of a round trip.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kysoctl-bus.h"
#include "kysoctl-custody.h"
#include "kysoctl-output.h"
#include "kysoctl-util.h"
#include "log.h"
#include "macro.h"

/* A registry of tens of thousands of tokens is a few MiB; the system bus caps messages at 32 MiB. */
#define IMPORT_MAX (16U * 1024U * 1024U)

enum {
        OPT_OUTPUT = 'o',
};

const struct option custody_export_options[] = {
        { "output", required_argument, NULL, OPT_OUTPUT },
        {},
};

static size_t registry_records(json_object *doc)
{
        json_object *records;

        if (!json_object_object_get_ex(doc, "records", &records) ||
            !json_object_is_type(records, json_type_array))
                return 0;
        return json_object_array_length(records);
}

int run_export(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *output = NULL, *text, *pretty;
        json_object *doc;
        size_t records;
        int r;

        if (argc > 1) {
                log_error("'export' takes no arguments (to write a file: kysoctl export -o FILE).");
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < opts->n_cmd_options; i++)
                if (opts->cmd_options[i].id == OPT_OUTPUT)
                        output = opts->cmd_options[i].arg;
        if (output && !*output) {
                log_error("-o needs a file name, or - for standard output.");
                return EXIT_USAGE;
        }
        if (output && streq(output, "-"))
                output = NULL;

        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = bus_manager_call_new(bus, "Export", &m);
        if (r < 0)
                return bus_build_failed(r);
        r = bus_call(bus, m, ACCESS_READ, "Cannot export the custody registry", &reply);
        if (r != 0)
                return r;
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0)
                return bus_reply_invalid(r);

        doc = json_parse_document(text, strlen(text), "kysod's export");
        if (!doc)
                return EXIT_FAILED;
        records = registry_records(doc);
        pretty = json_object_to_json_string_ext(doc, OUTPUT_JSON_FLAGS);
        if (!pretty) {
                json_object_put(doc);
                log_oom();
                return EXIT_FAILED;
        }
        if (!output) {
                printf("%s\n", pretty);
                json_object_put(doc);
                return output_flush();
        }

        {
                _cleanup_(freep) char *data = NULL;

                r = asprintf(&data, "%s\n", pretty);
                json_object_put(doc);
                if (r < 0)
                        return log_oom(), EXIT_FAILED;
                if (write_file_atomic(output, data, (size_t) r) < 0)
                        return EXIT_FAILED;
        }
        if (!opts->json)
                printf("Wrote %zu record%s to %s.\n", records, records == 1 ? "" : "s", output);
        return output_flush();
}

/* The whole of fd, at most max bytes (else -EFBIG), NUL-terminated. */
static int read_all_fd(int fd, size_t max, char **ret, size_t *ret_len)
{
        _cleanup_(freep) char *buf = NULL;
        size_t len = 0, cap = 0;

        for (;;) {
                ssize_t k;

                if (len == cap) {
                        char *p;

                        if (cap > max)
                                return -EFBIG;
                        cap = cap ? cap * 2 : 64 * 1024;
                        p = realloc(buf, cap + 1);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                }
                k = read(fd, buf + len, cap - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                len += (size_t) k;
        }
        if (len > max)
                return -EFBIG;
        buf[len] = '\0';
        *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int run_import(const Options *opts, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(freep) char *text = NULL;
        _cleanup_(closep) int fd = -1;
        const char *path, *name, *format = NULL;
        json_object *doc, *v;
        uint32_t added;
        size_t len;
        int r;

        if (argc != 2) {
                log_error("'import' needs one file (or - for standard input); see 'kysoctl import --help'.");
                return EXIT_USAGE;
        }
        path = argv[1];
        name = streq(path, "-") ? "standard input" : path;
        if (!streq(path, "-")) {
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0) {
                        log_error_errno(errno, "Cannot open %s: %m", path);
                        return EXIT_FAILED;
                }
        }
        r = read_all_fd(fd >= 0 ? fd : STDIN_FILENO, IMPORT_MAX, &text, &len);
        if (r == -EFBIG) {
                log_error("%s is larger than %u MiB: split the registry into smaller files.", name,
                          IMPORT_MAX / 1024U / 1024U);
                return EXIT_FAILED;
        }
        if (r < 0) {
                log_error_errno(r, "Cannot read %s: %m", name);
                return EXIT_FAILED;
        }
        if (strlen(text) != len) {
                log_error("%s holds a NUL byte: it is not a JSON text file.", name);
                return EXIT_FAILED;
        }
        if (!utf8_valid(text)) {
                log_error("%s is not valid UTF-8: JSON is UTF-8 (convert it, e.g. with iconv).", name);
                return EXIT_FAILED;
        }
        doc = json_parse_document(text, len, name);
        if (!doc)
                return EXIT_FAILED;
        if (json_object_is_type(doc, json_type_object) && json_object_object_get_ex(doc, "format", &v) &&
            json_object_is_type(v, json_type_string))
                format = json_object_get_string(v);
        r = format && streq(format, "kyso-registry");
        json_object_put(doc);
        if (!r) {
                log_error("%s is not a kyso registry: it needs \"format\": \"kyso-registry\", as "
                          "'kysoctl export' writes.",
                          name);
                return EXIT_FAILED;
        }

        if (bus_open(&bus) < 0)
                return EXIT_FAILED;
        r = bus_manager_call_new(bus, "Import", &m);
        if (r >= 0)
                r = sd_bus_message_append(m, "s", text);
        if (r < 0)
                return bus_build_failed(r);
        {
                char what[PATH_MAX + 64];

                snprintf(what, sizeof(what), "Cannot import %s", name);
                r = bus_call(bus, m, ACCESS_CHANGE, what, &reply);
                if (r != 0)
                        return r;
        }
        r = sd_bus_message_read(reply, "u", &added);
        if (r < 0)
                return bus_reply_invalid(r);

        if (opts->json) {
                json_object *o = json_object_new_object();

                if (o)
                        json_object_object_add(o, "added", json_object_new_int64(added));
                r = output_json(o);
                if (r != EXIT_OK)
                        return r;
        } else
                printf("Imported %" PRIu32 " record(s).\n", added);
        return output_flush();
}
