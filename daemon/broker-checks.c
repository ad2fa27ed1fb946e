/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the broker checks and records around a client's call: custody (may
 * this client use this token, now?), a token's arrival (its certificates),
 * the PIN's age and a new PIN's quality, and the audit record without
 * which a signature does not go out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "broker-internal.h"
#include "certs.h"
#include "log.h"
#include "macro.h"
#include "policy.h"

/*
 * The client's executable for the audit log: /proc/PID/exe, which only the same user (or a privileged one)
 * may read, else the process name from /proc/PID/comm, which everyone may, in brackets as ps(1) shows it.
 */
void client_executable(pid_t pid, char *buf, size_t size)
{
        char path[64];
        ssize_t n;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/exe", (int) pid);
        n = readlink(path, buf, size - 1);
        if (n > 0) {
                buf[n] = '\0';
                return;
        }
        buf[0] = '\0';
        snprintf(path, sizeof(path), "/proc/%d/comm", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return;
        if (size > 2 && fgets(buf + 1, (int) size - 2, f)) {
                buf[0] = '[';
                buf[strcspn(buf, "\n")] = '\0';
                strcat(buf, "]");
        } else
                buf[0] = '\0';
        fclose(f);
}

/* ---- custody ---- */

/* May the client use the slot's token? Refusals are logged and told to the bus. */
CK_RV custody_allows(BrokerClient *bc, Slot *slot, const char *operation, CustodyVerdict *ret)
{
        CustodyVerdict v = custody_check(bc->uid, slot->id);

        if (v.decision.rv != CKR_OK)
                custody_report_denied(&v, bc->uid, client_pid(bc->conn), bc->exe, slot->id, operation);
        if (ret)
                *ret = v;
        return v.decision.rv;
}

void session_custody_remember(Session *s, const CustodyVerdict *v)
{
        __atomic_store_n(&s->custody_until, v->recheck_at, __ATOMIC_RELAXED);
        __atomic_store_n(&s->custody_gen, v->generation, __ATOMIC_RELEASE);
}

/*
 * The check on every call in a session: free while nothing changed (the registry's generation and the
 * decision's window), a full decision when something did. A token reported lost, or a custody record whose
 * validity ends, stops an open session at its next call.
 */
CK_RV session_custody(BrokerClient *bc, Session *s, WireCall call)
{
        CustodyVerdict v;
        CK_RV rv;

        if (__atomic_load_n(&s->custody_gen, __ATOMIC_ACQUIRE) == custody_generation() &&
            custody_now() < __atomic_load_n(&s->custody_until, __ATOMIC_RELAXED))
                return CKR_OK;
        rv = custody_allows(bc, s->slot, wire_call_info(call)->name, &v);
        if (rv == CKR_OK)
                session_custody_remember(s, &v);
        return rv;
}

/* Reads the certificates on the slot's token (public objects: no login) and tells custody. */
static void custody_note_certificates(Slot *slot)
{
        BackendCertificate *raw = NULL;
        StoreCertificate *certs;
        size_t n = 0, kept = 0;
        char serial[33];
        CK_RV rv;

        custody_slot_serial(slot->id, serial);
        if (!serial[0])
                return;
        slot_call_begin(slot);
        rv = backend_certificates(slot, &raw, &n);
        slot_call_end(slot);
        if (rv != CKR_OK) {
                log_debug("Slot %lu: cannot read the token's certificates (%s).", slot->id, ckr_to_string(rv));
                return;
        }
        certs = calloc(n ? n : 1, sizeof(StoreCertificate));
        for (size_t i = 0; certs && i < n; i++) {
                StoreCertificate *c = &certs[kept];

                if (cert_describe(raw[i].der, raw[i].der_len, c) < 0)
                        continue; /* not X.509 (or no memory): not described */
                c->serial = strdup(serial);
                c->key_id = strdup(raw[i].id_hex);
                c->label = strdup(raw[i].label);
                kept++;
        }
        backend_certificates_free(raw, n);
        if (!certs)
                return;
        custody_certificates(slot->id, certs, kept);
        store_certificates_free(certs, kept);
}

/* Tells custody what is in the slot now. */
void custody_note_slot(Slot *slot)
{
        CK_TOKEN_INFO ti;
        CK_RV rv = CKR_TOKEN_NOT_PRESENT;

        if (slot->token_present) {
                slot_call_begin(slot);
                rv = backend_get_token_info(slot, &ti);
                slot_call_end(slot);
        }
        if (rv != CKR_OK) {
                custody_token_absent(slot->id);
                return;
        }
        custody_token_present(slot->id, &ti);
        custody_note_certificates(slot);
}

/*
 * [policy] refused_tokens = hidden: is the slot's token one the client may not use, to be shown as absent?
 * (Not a refusal yet: the client has not asked to use it, so nothing is logged.)
 */
bool token_hidden(BrokerClient *bc, const Slot *slot)
{
        return custody_hides_refused() && custody_check(bc->uid, slot->id).decision.rv != CKR_OK;
}

/* ---- PINs and the audit log ---- */

/*
 * The audit record of something the client did on the slot's token: its key (a backend handle, or
 * CK_INVALID_HANDLE) and mechanism (CK_UNAVAILABLE_INFORMATION for none) are named in it. Returns what
 * audit_log() returns: a failure means the result must not reach the client.
 */
int audit_operation(BrokerClient *bc, Slot *slot, const char *event, CK_SESSION_HANDLE real_session,
                           CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mech, CK_RV rv, const char *detail)
{
        char serial[33], id[KEY_NAME_SIZE] = "", label[KEY_NAME_SIZE] = "", mbuf[24];

        custody_slot_serial(slot->id, serial);
        if (key != CK_INVALID_HANDLE)
                backend_key_names_cached(slot, real_session, key, id, label);
        return audit_log(&(AuditEntry) {
                .event = event,
                .uid = bc->uid,
                .pid = client_pid(bc->conn),
                .exe = bc->exe,
                .serial = serial,
                .key_id = id,
                .key_label = label,
                .mechanism = mech != CK_UNAVAILABLE_INFORMATION ? audit_mechanism_name(mech, mbuf, sizeof(mbuf)) : "",
                .result = ckr_to_string(rv),
                .detail = detail,
        });
}

/* Enforces the PIN's age and a handover's demand before a user login (see policy_pin_age()). */
CK_RV pin_age_allows(BrokerClient *bc, Slot *slot, WireCall call)
{
        char serial[33];
        PinVerdict v = custody_pin_check(slot->id, serial);

        if (v.login_rv != CKR_OK) {
                broker_refuse(bc, slot, wire_call_info(call)->name, v.reason);
                return v.login_rv;
        }
        if (v.state == PIN_STATE_EXPIRED)
                log_notice("Token %s: %s; the login of pid %d (uid %u) goes on ([pin] mode = warn).", serial, v.reason,
                           (int) client_pid(bc->conn), (unsigned) bc->uid);
        return CKR_OK;
}

/* C_SetPIN's and C_InitPIN's new PIN, against the quality rules of the token's kind. */
CK_RV pin_quality_allows(BrokerClient *bc, Slot *slot, WireCall call, const WireArg *new_pin,
                                const WireArg *old_pin)
{
        PinPolicy p = custody_pin_policy(slot->id);
        PolicyDecision d = policy_pin_quality(new_pin->ptr, new_pin->len, old_pin ? old_pin->ptr : NULL,
                                              old_pin ? old_pin->len : 0, (unsigned) p.min_length);

        if (d.rv != CKR_OK)
                broker_refuse(bc, slot, wire_call_info(call)->name, d.reason);
        return d.rv;
}

/* Whether a signing or decrypting call ended its operation (not a length query, not a too small buffer). */
static bool operation_ended(CK_RV rv, const WireArg *out)
{
        if (rv == CKR_BUFFER_TOO_SMALL)
                return false;
        return rv != CKR_OK || out->ptr != NULL;
}

/*
 * The audit record at the end of a signature, decryption or unwrap. Without it the result does not go out:
 * the output is wiped and the call fails, as the regulation wants no signature that is not accounted for.
 */
CK_RV audit_result(BrokerClient *bc, Session *session, WireCall call, WireArg *args, CK_RV rv)
{
        const char *event = NULL;
        CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
        CK_MECHANISM_TYPE mech = CK_UNAVAILABLE_INFORMATION;
        WireArg *out = NULL;

        switch (call) {
        case KYSO_CALL_C_Sign:
        case KYSO_CALL_C_SignRecover:
                out = &args[2];
                event = "sign";
                break;
        case KYSO_CALL_C_SignFinal:
                out = &args[1];
                event = "sign";
                break;
        case KYSO_CALL_C_Decrypt:
                out = &args[2];
                event = "decrypt";
                break;
        case KYSO_CALL_C_DecryptFinal:
                out = &args[1];
                event = "decrypt";
                break;
        case KYSO_CALL_C_UnwrapKey:
                event = "unwrap";
                key = args[2].value;
                mech = args[1].ptr ? ((CK_MECHANISM *) args[1].ptr)->mechanism : CK_UNAVAILABLE_INFORMATION;
                break;
        default:
                return rv;
        }
        if (out && !operation_ended(rv, out))
                return rv;
        if (streq(event, "sign")) {
                key = session->sign_key;
                mech = session->sign_mech;
        } else if (streq(event, "decrypt")) {
                key = session->decrypt_key;
                mech = session->decrypt_mech;
        }
        if (audit_operation(bc, session->slot, event, session->real, key, mech, rv, NULL) >= 0 || rv != CKR_OK)
                return rv;

        if (out && out->ptr)
                secure_zero(out->ptr, out->len);
        if (call == KYSO_CALL_C_UnwrapKey) {
                slot_call_begin(session->slot);
                (void) backend_destroy_object(session->slot, session->real, args[5].value);
                slot_call_end(session->slot);
        }
        log_error("Refused the result of %s to pid %d (uid %u): the audit log cannot be written.",
                  wire_call_info(call)->name, (int) client_pid(bc->conn), (unsigned) bc->uid);
        return CKR_FUNCTION_FAILED;
}
