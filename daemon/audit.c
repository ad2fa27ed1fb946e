/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include "audit.h"
#include "clock.h"
#include "custody-json.h"
#include "custody.h"
#include "log.h"
#include "macro.h"
#include "state.h"

/* Stable: a fleet's queries match on them ("journalctl MESSAGE_ID=..."). Never change one. */
static const struct {
        const char *event;
        const char *message_id;
        int priority;
} events[] = {
        { "login", "4f816c39912846fc9ecf4eb80735942c", LOG_INFO },
        { "logout", "029790f4d26447b49b5ecd01e0b7b946", LOG_INFO },
        { "sign", "6d1b99dddbf5458a91e801f676834e83", LOG_INFO },
        { "decrypt", "502edbf6c42243b588f323cd0d5badae", LOG_INFO },
        { "unwrap", "9f24a1c10b344815871f74a469417fea", LOG_INFO },
        { "pin-change", "ac8af7ef00904d1d9611710e71732797", LOG_NOTICE },
        { "pin-init", "3eebb47ad869419e924c342467d88127", LOG_NOTICE },
        { "custody", "d022726e25c04a10a828abd0e77cb6a6", LOG_NOTICE },
        { "handover", "b9d73cdfc81e429e8096e6485c6de7c8", LOG_NOTICE },
        { "refused", "1b8fd9576a2347909d3f259cba35262c", LOG_WARNING },
};

const char *audit_event_message_id(const char *event)
{
        for (size_t i = 0; i < ELEMENTSOF(events); i++)
                if (streq(events[i].event, event))
                        return events[i].message_id;
        return NULL;
}

static int event_priority(const char *event)
{
        for (size_t i = 0; i < ELEMENTSOF(events); i++)
                if (streq(events[i].event, event))
                        return events[i].priority;
        return LOG_INFO;
}

/* Under systemd (a service's stderr is the journal, or it was started by systemd), records go there too. */
static bool under_systemd(void)
{
        return getenv("JOURNAL_STREAM") || getenv("INVOCATION_ID");
}

static const char *s_or_empty(const char *s)
{
        return s ?: "";
}

/* The record's link in the chain, as 64 hex digits. */
static void hash_hex(const AuditRecord *r, char out[65])
{
        for (size_t i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", r->hash[i]);
}

static void journal_send(const AuditRecord *r)
{
        char hash[65];

        hash_hex(r, hash);
        (void) sd_journal_send("MESSAGE=%s by uid %u (pid %d, %s) on token %s%s%s: %s%s%s", r->event, r->uid,
                               (int) r->pid, r->exe[0] ? r->exe : "?", r->serial[0] ? r->serial : "-",
                               r->mechanism[0] ? " with " : "", r->mechanism, r->result, r->detail[0] ? ": " : "",
                               r->detail, "MESSAGE_ID=%s", audit_event_message_id(r->event) ?: "", "PRIORITY=%i",
                               event_priority(r->event), "SYSLOG_IDENTIFIER=kysod", "KYSO_EVENT=%s", r->event,
                               "KYSO_UID=%u", r->uid, "KYSO_PID=%d", (int) r->pid, "KYSO_EXE=%s", r->exe,
                               "KYSO_TOKEN_SERIAL=%s", r->serial, "KYSO_KEY_ID=%s", r->key_id, "KYSO_KEY_LABEL=%s",
                               r->key_label, "KYSO_MECHANISM=%s", r->mechanism, "KYSO_RESULT=%s", r->result,
                               "KYSO_DETAIL=%s", r->detail, "KYSO_AUDIT_ID=%lld", (long long) r->id,
                               "KYSO_AUDIT_HASH=%s", hash, NULL);
}

int audit_log(const AuditEntry *e)
{
        AuditRecord r = {
                .at = clock_now(),
                .event = (char *) s_or_empty(e->event),
                .uid = (uint32_t) e->uid,
                .pid = (int32_t) e->pid,
                .exe = (char *) s_or_empty(e->exe),
                .serial = (char *) s_or_empty(e->serial),
                .key_id = (char *) s_or_empty(e->key_id),
                .key_label = (char *) s_or_empty(e->key_label),
                .mechanism = (char *) s_or_empty(e->mechanism),
                .result = (char *) s_or_empty(e->result),
                .detail = (char *) s_or_empty(e->detail),
        };
        Store *s;
        int k;

        /* Not under the state lock: appends have their own, and must not wait for the store's SQL. */
        s = state_peek();
        k = s ? store_audit_append(s, &r) : -EBADF;
        if (k < 0)
                return log_error_errno(k, "Failed to write the audit record of a %s on token %s by uid %u: %m",
                                       r.event, r.serial[0] ? r.serial : "-", r.uid);
        if (under_systemd())
                journal_send(&r);
        return 0;
}

static json_object *record_json(const AuditRecord *r)
{
        _cleanup_(freep) char *user = custody_user_name((uid_t) r->uid);
        json_object *o = json_object_new_object();
        char t[32], hash[65];

        custody_time_format(r->at, t, sizeof(t));
        hash_hex(r, hash);
        json_object_object_add(o, "id", json_object_new_int64(r->id));
        json_object_object_add(o, "time", json_object_new_string(t));
        json_object_object_add(o, "event", json_object_new_string(r->event));
        json_object_object_add(o, "uid", json_object_new_int64(r->uid));
        json_object_object_add(o, "user", json_object_new_string(user ?: ""));
        json_object_object_add(o, "pid", json_object_new_int64(r->pid));
        json_object_object_add(o, "exe", json_object_new_string(r->exe));
        json_object_object_add(o, "serial", json_object_new_string(r->serial));
        json_object_object_add(o, "key_id", json_object_new_string(r->key_id));
        json_object_object_add(o, "key_label", json_object_new_string(r->key_label));
        json_object_object_add(o, "mechanism", json_object_new_string(r->mechanism));
        json_object_object_add(o, "result", json_object_new_string(r->result));
        json_object_object_add(o, "detail", json_object_new_string(r->detail));
        json_object_object_add(o, "hash", json_object_new_string(hash));
        return o;
}

int audit_query_json(const AuditFilter *f, char **ret)
{
        AuditRecord *recs = NULL;
        json_object *arr;
        size_t n = 0;
        Store *s;
        char *text;
        int r;

        s = state_acquire();
        r = s ? store_audit_query(s, f, &recs, &n) : -EBADF;
        state_release();
        if (r < 0)
                return r;
        arr = json_object_new_array();
        for (size_t i = 0; arr && i < n; i++)
                json_object_array_add(arr, record_json(&recs[i]));
        audit_records_free(recs, n);
        if (!arr)
                return -ENOMEM;
        text = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

int audit_verify(AuditVerdict *ret)
{
        Store *s;
        int r;

        s = state_acquire();
        r = s ? store_audit_verify(s, ret) : -EBADF;
        state_release();
        return r;
}

int audit_flush(void)
{
        Store *s;
        int r;

        s = state_acquire();
        r = s ? store_audit_flush(s) : 0;
        state_release();
        return r;
}

const char *audit_mechanism_name(CK_MECHANISM_TYPE m, char *buf, size_t size)
{
        static const struct {
                CK_MECHANISM_TYPE m;
                const char *name;
        } names[] = {
#define M(x) { x, #x }
                M(CKM_RSA_PKCS),          M(CKM_RSA_X_509),         M(CKM_RSA_PKCS_OAEP),     M(CKM_RSA_PKCS_PSS),
                M(CKM_SHA1_RSA_PKCS),     M(CKM_SHA224_RSA_PKCS),   M(CKM_SHA256_RSA_PKCS),   M(CKM_SHA384_RSA_PKCS),
                M(CKM_SHA512_RSA_PKCS),   M(CKM_SHA1_RSA_PKCS_PSS), M(CKM_SHA224_RSA_PKCS_PSS),
                M(CKM_SHA256_RSA_PKCS_PSS), M(CKM_SHA384_RSA_PKCS_PSS), M(CKM_SHA512_RSA_PKCS_PSS),
                M(CKM_ECDSA),             M(CKM_ECDSA_SHA1),        M(CKM_ECDSA_SHA224),      M(CKM_ECDSA_SHA256),
                M(CKM_ECDSA_SHA384),      M(CKM_ECDSA_SHA512),      M(CKM_EDDSA),             M(CKM_DSA),
                M(CKM_DSA_SHA1),          M(CKM_SHA_1_HMAC),        M(CKM_SHA256_HMAC),       M(CKM_SHA384_HMAC),
                M(CKM_SHA512_HMAC),       M(CKM_AES_ECB),           M(CKM_AES_CBC),           M(CKM_AES_CBC_PAD),
                M(CKM_AES_CTR),           M(CKM_AES_GCM),           M(CKM_AES_CMAC),          M(CKM_AES_KEY_WRAP),
                M(CKM_AES_KEY_WRAP_PAD),  M(CKM_DES3_ECB),          M(CKM_DES3_CBC),          M(CKM_DES3_CBC_PAD),
#undef M
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (names[i].m == m)
                        return names[i].name;
        snprintf(buf, size, "0x%08lx", (unsigned long) m);
        return buf;
}
