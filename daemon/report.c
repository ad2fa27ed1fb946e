/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "custody-json.h"
#include "custody.h"
#include "macro.h"
#include "report.h"
#include "state.h"

static json_object *str_json(const char *s)
{
        return json_object_new_string(s ?: "");
}

static json_object *token_json(const TokenView *v, uint64_t signatures)
{
        const CustodyRecord *c = v->has_record ? &v->record : NULL;
        json_object *o = json_object_new_object(), *certs = json_object_new_array();

        json_object_object_add(o, "serial", str_json(v->token.serial));
        json_object_object_add(o, "label", str_json(v->token.label));
        json_object_object_add(o, "manufacturer", str_json(v->token.manufacturer));
        json_object_object_add(o, "model", str_json(v->token.model));
        json_object_object_add(o, "kind", str_json(c ? custody_kind_to_string(c->kind) : ""));
        json_object_object_add(o, "holder", str_json(c ? c->holder : ""));
        json_object_object_add(o, "organization", str_json(c ? c->organization : ""));
        json_object_object_add(o, "decision", str_json(c ? c->decision_ref : ""));
        json_object_object_add(o, "decision_date", str_json(c ? c->decision_date : ""));
        json_object_object_add(o, "signed_by", str_json(c ? c->decision_signer : ""));
        json_object_object_add(o, "state", str_json(c ? custody_state_to_string(c->state) : "unassigned"));
        json_object_object_add(o, "valid_from", custody_time_json(c ? c->valid_from : 0));
        json_object_object_add(o, "valid_until", custody_time_json(c ? c->valid_until : 0));
        json_object_object_add(o, "pin_changed_at", custody_time_json(v->pin_changed_at));
        json_object_object_add(o, "pin_due_at", custody_time_json(v->pin.due_at));
        json_object_object_add(o, "pin_state", str_json(pin_state_to_string(v->pin.state)));
        for (size_t i = 0; i < v->n_certificates; i++) {
                json_object *x = json_object_new_object();

                json_object_object_add(x, "subject", str_json(v->certificates[i].subject));
                json_object_object_add(x, "issuer", str_json(v->certificates[i].issuer));
                json_object_object_add(x, "not_before", custody_time_json(v->certificates[i].not_before));
                json_object_object_add(x, "not_after", custody_time_json(v->certificates[i].not_after));
                json_object_array_add(certs, x);
        }
        json_object_object_add(o, "certificates", certs);
        json_object_object_add(o, "first_seen", custody_time_json(v->token.first_seen));
        json_object_object_add(o, "last_seen", custody_time_json(v->token.last_seen));
        json_object_object_add(o, "signatures", json_object_new_int64((int64_t) signatures));
        return o;
}

int report_json(int64_t since, int64_t until, char **ret)
{
        char **serials = NULL;
        json_object *root, *tokens;
        size_t n = 0;
        char *text;
        int r;

        r = custody_serials(&serials, &n);
        if (r < 0)
                return r;
        root = json_object_new_object();
        tokens = json_object_new_array();
        json_object_object_add(root, "generated_at", custody_time_json(clock_now()));
        json_object_object_add(root, "since", custody_time_json(since));
        json_object_object_add(root, "until", custody_time_json(until));
        for (size_t i = 0; i < n && r >= 0; i++) {
                uint64_t signatures = 0;
                TokenView v;
                Store *s;

                if (custody_view(serials[i], true, &v) < 0)
                        continue; /* gone meanwhile */
                s = state_acquire();
                r = s ? store_audit_count(s, serials[i], "sign", since, until, &signatures) : -EBADF;
                state_release();
                if (r >= 0)
                        json_object_array_add(tokens, token_json(&v, signatures));
                token_view_done(&v);
        }
        for (size_t i = 0; i < n; i++)
                free(serials[i]);
        free(serials);
        json_object_object_add(root, "tokens", tokens);
        if (r < 0) {
                json_object_put(root);
                return r;
        }
        text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}
