/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Login, per client: the first client's PIN goes to the token, a later
 * client's is checked against a salted digest of the one the token
 * accepted (wrong ones counted by the broker), and the token logs out
 * when the last client that logged in does.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#include "broker-internal.h"
#include "log.h"
#include "macro.h"
#include "policy.h"

static void pin_digest(const Slot *slot, CK_USER_TYPE user, const uint8_t *pin, size_t pin_len, uint8_t out[32])
{
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        uint64_t u = user;
        unsigned int n = 32;

        memset(out, 0, 32);
        if (!ctx)
                return;
        if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
            EVP_DigestUpdate(ctx, slot->pin_salt, sizeof(slot->pin_salt)) == 1 &&
            EVP_DigestUpdate(ctx, &u, sizeof(u)) == 1 && (pin_len == 0 || EVP_DigestUpdate(ctx, pin, pin_len) == 1))
                (void) EVP_DigestFinal_ex(ctx, out, &n);
        EVP_MD_CTX_free(ctx);
}

static void remember_pin_locked(Slot *slot, CK_USER_TYPE user, const uint8_t *pin, size_t pin_len)
{
        slot->pin_known = pin != NULL && RAND_bytes(slot->pin_salt, sizeof(slot->pin_salt)) == 1;
        if (slot->pin_known)
                pin_digest(slot, user, pin, pin_len, slot->pin_hash);
}

static bool pin_matches_locked(const Slot *slot, CK_USER_TYPE user, const uint8_t *pin, size_t pin_len)
{
        uint8_t h[32];
        bool ok;

        if (!slot->pin_known || !pin)
                return false;
        pin_digest(slot, user, pin, pin_len, h);
        ok = CRYPTO_memcmp(h, slot->pin_hash, sizeof(h)) == 0;
        secure_zero(h, sizeof(h));
        return ok;
}

bool client_logged_in(BrokerClient *bc, const Slot *slot, CK_USER_TYPE *ret_user)
{
        uint64_t v;
        bool r;

        pthread_mutex_lock(&bc->lock);
        r = handle_map_get(bc->logins, key1(slot->id), &v);
        pthread_mutex_unlock(&bc->lock);
        if (r && ret_user)
                *ret_user = v;
        return r;
}

/*
 * A later client's PIN, checked against the digest of the one the token
 * accepted. The token does not see it and does not count a wrong one, so
 * the broker counts (see policy_pin_check()). Call with login_lock held.
 */
static CK_RV check_pin_digest_locked(BrokerClient *bc, Slot *slot, WireCall call, CK_USER_TYPE user,
                                     const uint8_t *pin, size_t pin_len)
{
        unsigned failures = pin_failures_get(slot);
        CK_TOKEN_INFO ti;
        CK_FLAGS flags = 0;
        PolicyDecision d;

        slot_call_begin(slot);
        if (backend_get_token_info(slot, &ti) == CKR_OK)
                flags = ti.flags;
        slot_call_end(slot);

        d = policy_pin_check(failures, flags);
        if (d.rv != CKR_OK) {
                broker_refuse(bc, slot, wire_call_info(call)->name, d.reason);
                return d.rv;
        }
        if (pin_matches_locked(slot, user, pin, pin_len)) {
                (void) pin_failures_set(slot, 0);
                return CKR_OK;
        }
        /* Failing to count would let guessing go on uncounted: refuse instead. */
        if (pin_failures_set(slot, failures + 1) < 0)
                return CKR_HOST_MEMORY;
        log_notice("Wrong PIN on slot %lu from pid %d (uid %u): %u of %u the broker allows while the token is "
                   "logged in.",
                   slot->id, (int) client_pid(bc->conn), (unsigned) bc->uid, failures + 1,
                   policy_pin_tries_allowed(flags));
        return CKR_PIN_INCORRECT;
}

/*
 * Logs the client in: the token checks the first client's PIN; later
 * clients must present the same PIN, checked against a salted digest of
 * it, because the token would only answer "already logged in".
 */
CK_RV broker_login(BrokerClient *bc, Session *s, WireCall call, WireArg *args)
{
        Slot *slot = s->slot;
        CK_USER_TYPE user = args[1].value;
        const uint8_t *pin = args[2].ptr;
        size_t pin_len = args[2].len;
        CK_RV rv;

        if (user == CKU_SO) {
                rv = check_token_operation(bc, slot, TOKEN_OP_SO_LOGIN, wire_call_info(call)->name);
                if (rv != CKR_OK)
                        return rv;
        }
        if (user == CKU_CONTEXT_SPECIFIC) {
                /* Re-authentication for one key operation: only the token can judge it. */
                if (!client_logged_in(bc, slot, NULL))
                        return CKR_USER_NOT_LOGGED_IN;
                slot_call_begin(slot);
                rv = backend_invoke(slot->backend, call, args);
                slot_call_end(slot);
                return rv;
        }
        if (client_logged_in(bc, slot, NULL)) {
                /* The token is logged in as this client is: let it answer, in its own order of checks. */
                slot_call_begin(slot);
                rv = backend_invoke(slot->backend, call, args);
                slot_call_end(slot);
                return rv == CKR_OK ? CKR_USER_ALREADY_LOGGED_IN : rv;
        }

        pthread_mutex_lock(&slot->login_lock);
        if (slot->login_count == 0) {
                slot_call_begin(slot);
                rv = backend_invoke(slot->backend, call, args);
                if (rv == CKR_USER_ALREADY_LOGGED_IN) {
                        /* A login no client of ours holds: end it, so this PIN is really checked. */
                        (void) backend_logout(slot, s->real);
                        rv = backend_invoke(slot->backend, call, args);
                }
                slot_call_end(slot);
                if (rv == CKR_OK) {
                        slot->login_user = user;
                        remember_pin_locked(slot, user, pin, pin_len);
                        (void) pin_failures_set(slot, 0);
                }
        } else if (slot->login_user != user)
                rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
        else
                rv = check_pin_digest_locked(bc, slot, call, user, pin, pin_len);

        if (rv == CKR_OK) {
                pthread_mutex_lock(&bc->lock);
                if (handle_map_put(bc->logins, key1(slot->id), user) < 0)
                        rv = CKR_HOST_MEMORY;
                pthread_mutex_unlock(&bc->lock);
                if (rv == CKR_OK)
                        slot->login_count++;
                else if (slot->login_count == 0)
                        (void) backend_logout(slot, s->real);
        }
        pthread_mutex_unlock(&slot->login_lock);
        return rv;
}

/* Ends the client's login on the slot; the token logs out when no client is left logged in. real_session
 * is a live backend session on that token. */
CK_RV broker_logout(BrokerClient *bc, Slot *slot, CK_SESSION_HANDLE real_session)
{
        CK_RV rv = CKR_OK;
        bool was;

        pthread_mutex_lock(&bc->lock);
        was = handle_map_remove(bc->logins, key1(slot->id), NULL);
        pthread_mutex_unlock(&bc->lock);
        if (!was)
                return CKR_USER_NOT_LOGGED_IN;

        pthread_mutex_lock(&slot->login_lock);
        if (slot->login_count > 0 && --slot->login_count == 0) {
                slot_call_begin(slot);
                rv = backend_logout(slot, real_session);
                slot_call_end(slot);
                slot->pin_known = false;
                secure_zero(slot->pin_hash, sizeof(slot->pin_hash));
                __atomic_add_fetch(&slot->login_generation, 1, __ATOMIC_RELEASE);
                (void) pin_failures_set(slot, 0);
                if (rv == CKR_USER_NOT_LOGGED_IN)
                        rv = CKR_OK; /* the token had already ended it (e.g. it was removed) */
        }
        pthread_mutex_unlock(&slot->login_lock);
        return rv;
}

void after_set_pin(BrokerClient *bc, Slot *slot, const WireArg *args)
{
        CK_USER_TYPE user;

        /* The logged-in client changed its own PIN: later clients must present the new one. */
        if (!client_logged_in(bc, slot, &user))
                return;
        pthread_mutex_lock(&slot->login_lock);
        remember_pin_locked(slot, user, args[2].ptr, args[2].len);
        pthread_mutex_unlock(&slot->login_lock);
}
