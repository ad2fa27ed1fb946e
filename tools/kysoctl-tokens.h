/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysod's org.kyso1.Token objects as kysoctl reads them: one GetManagedObjects
 * call, its reply parsed into TokenProps, and a token as the JSON object that
 * "kysoctl tokens --json" prints. Shared by the custody commands and "kysoctl
 * pin". Properties an older kysod does not send stay NULL / 0 and are null in
 * the JSON; ones kysoctl does not know are skipped.
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct HandoverEntry {
        const char *from;
        const char *to;
        const char *minutes;
        int64_t time;
        const char *recorded_by;
} HandoverEntry;

/*
 * One org.kyso1.Token object. Strings point into the reply they were read
 * from, which must outlive this; unset ones (an older kysod) are NULL.
 */
typedef struct TokenProps {
        const char *path;
        const char *serial;
        const char *label;
        const char *manufacturer;
        const char *model;
        int present;
        uint64_t slot;
        int64_t first_seen;
        int64_t last_seen;
        const char *kind;
        const char *holder;
        const char *organization;
        const char *decision_number;
        const char *decision_date;
        const char *decision_signer;
        int64_t valid_from;
        int64_t valid_until;
        const char *state;
        const char *state_reason;
        int pin_change_required;
        HandoverEntry *handovers;
        size_t n_handovers;
        int64_t pin_changed_at;  /* 0: kysod saw no change */
        int64_t pin_due_at;      /* 0: due now (no base date), or not sent */
        const char *pin_state;   /* "ok", "expiring", ..., "locked" */
        uint32_t pin_min_length; /* 0: not sent */
        const char *pin_mode;    /* "warn" or "enforce" */
        uint32_t seen;           /* bit i: property i of the table in kysoctl-tokens.c was in the reply */
} TokenProps;

void token_props_done(TokenProps *t);
void token_props_free(TokenProps *a, size_t n);

/* Reads an a{sv} of org.kyso1.Token properties (a GetAll reply) into t. */
int token_props_read(sd_bus_message *m, TokenProps *t);

/* Calls GetManagedObjects on /org/kyso1; timeout_usec 0 is sd-bus's default. */
int managed_objects_call(sd_bus *bus, uint64_t timeout_usec, bool auto_start, sd_bus_error *error,
                         sd_bus_message **ret);

/*
 * The org.kyso1.Token objects of a GetManagedObjects reply, sorted by serial. Their strings
 * point into reply. -ENOMEM, or the -errno of a reply that does not have the expected shape.
 */
int tokens_parse(sd_bus_message *reply, TokenProps **ret, size_t *ret_n);

/* Every property, as "kysoctl tokens --json" prints a token. NULL when out of memory. */
json_object *token_to_json(const TokenProps *t);

/* A time as JSON: RFC 3339 UTC, null for 0, the number when out of RFC 3339's range. */
json_object *json_time(int64_t t);

/* s, or fallback when s is NULL or empty. */
const char *str_or(const char *s, const char *fallback);
