/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fnmatch.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "kysod-config.h"
#include "macro.h"
#include "policy.h"

/* Mechanisms whose parameter is a plain byte string (IV, nonce, public value, OID). */
static bool parameter_is_byte_string(CK_MECHANISM_TYPE m)
{
        switch (m) {
        case CKM_AES_CBC:
        case CKM_AES_CBC_PAD:
        case CKM_AES_OFB:
        case CKM_AES_CFB8:
        case CKM_AES_CFB64:
        case CKM_AES_CFB128:
        case 0x00002108UL: /* CKM_AES_CFB1 */
        case 0x00001089UL: /* CKM_AES_CTS */
        case CKM_AES_KEY_WRAP:
        case 0x0000210AUL: /* CKM_AES_KEY_WRAP_PAD (SoftHSM2's value) */
        case 0x0000210BUL: /* CKM_AES_KEY_WRAP_KWP */
        case CKM_DES_CBC:
        case CKM_DES_CBC_PAD:
        case CKM_DES3_CBC:
        case CKM_DES3_CBC_PAD:
        case CKM_DES_OFB64:
        case CKM_DES_CFB64:
        case CKM_DES_CFB8:
        case CKM_CAMELLIA_CBC:
        case CKM_CAMELLIA_CBC_PAD:
        case CKM_ARIA_CBC:
        case CKM_ARIA_CBC_PAD:
        case CKM_SEED_CBC:
        case CKM_SEED_CBC_PAD:
        case CKM_BLOWFISH_CBC:
        case CKM_TWOFISH_CBC:
        case CKM_DH_PKCS_DERIVE:
        case CKM_GOST28147:
        case CKM_GOST28147_KEY_WRAP:
        case CKM_GOSTR3411:
        case CKM_GOSTR3411_HMAC:
        case CKM_GOSTR3410_WITH_GOSTR3411:
                return true;
        default:
                return false;
        }
}

PolicyDecision policy_mechanism_parameter(CK_MECHANISM_TYPE mechanism, bool has_parameter, size_t struct_size,
                                          size_t len)
{
        if (!has_parameter)
                return (PolicyDecision) { CKR_OK, NULL };
        if (struct_size > 0) {
                if (len == struct_size)
                        return (PolicyDecision) { CKR_OK, NULL };
                return (PolicyDecision) { CKR_MECHANISM_PARAM_INVALID,
                                          "the parameter does not have the size of the mechanism's structure" };
        }
        if (parameter_is_byte_string(mechanism))
                return (PolicyDecision) { CKR_OK, NULL };
        return (PolicyDecision) { CKR_MECHANISM_PARAM_INVALID,
                                  "kyso does not know this mechanism's parameter and will not pass raw bytes that "
                                  "could be read as pointers" };
}

/* ---- key protection ---- */

#define ALLOW ((PolicyDecision) { CKR_OK, NULL })

static PolicyDecision refuse(CK_RV rv, const char *reason)
{
        return (PolicyDecision) { rv, reason };
}

bool policy_is_key_class(CK_OBJECT_CLASS cls)
{
        return cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
}

static int template_bool(const CK_ATTRIBUTE *a)
{
        if (!a->pValue || a->ulValueLen != sizeof(CK_BBOOL))
                return POLICY_UNSET;
        return *(const CK_BBOOL *) a->pValue != CK_FALSE;
}

void policy_key_template_read(const CK_ATTRIBUTE *t, CK_ULONG n, KeyTemplate *ret)
{
        *ret = (KeyTemplate) {
                .cls = CK_UNAVAILABLE_INFORMATION,
                .sensitive = POLICY_UNSET,
                .extractable = POLICY_UNSET,
                .decrypt = POLICY_UNSET,
                .trusted = POLICY_UNSET,
        };
        for (CK_ULONG i = 0; t && i < n; i++)
                switch (t[i].type) {
                case CKA_CLASS:
                        if (t[i].pValue && t[i].ulValueLen == sizeof(CK_OBJECT_CLASS))
                                ret->cls = *(const CK_OBJECT_CLASS *) t[i].pValue;
                        break;
                case CKA_SENSITIVE:
                        ret->sensitive = template_bool(&t[i]);
                        break;
                case CKA_EXTRACTABLE:
                        ret->extractable = template_bool(&t[i]);
                        break;
                case CKA_DECRYPT:
                        ret->decrypt = template_bool(&t[i]);
                        break;
                case CKA_TRUSTED:
                        ret->trusted = template_bool(&t[i]);
                        break;
                default:
                        break;
                }
}

KeyFacts policy_key_facts_unknown(CK_OBJECT_CLASS cls)
{
        return (KeyFacts) { .cls = cls, .sensitive = true, .decrypt = true };
}

/* Must a secret key made this way be sensitive (K2)? */
static bool secret_must_be_sensitive(KeyOrigin origin, const KeyFacts *source)
{
        switch (origin) {
        case KEY_ORIGIN_CREATE:
        case KEY_ORIGIN_GENERATE:
                return false;
        case KEY_ORIGIN_DERIVE:
                /* Key agreement with a private key yields a secret the peer holds too. */
                return !source || (source->cls != CKO_PRIVATE_KEY && source->sensitive);
        default:
                return !source || source->sensitive;
        }
}

PolicyDecision policy_key_template(KeyOrigin origin, CK_OBJECT_CLASS cls, const KeyTemplate *t,
                                   const KeyFacts *source, bool caller_is_so, KeyTemplateAdditions *ret_add)
{
        KeyTemplateAdditions add = {};
        bool creating = origin != KEY_ORIGIN_COPY && origin != KEY_ORIGIN_SET;
        /* What the specification answers for an attribute that cannot take the value, made or changed. */
        CK_RV no = creating ? CKR_ATTRIBUTE_VALUE_INVALID : CKR_ATTRIBUTE_READ_ONLY;

        if (ret_add)
                *ret_add = add;
        if (t->trusted == 1 && !caller_is_so)
                return refuse(no,
                              "CKA_TRUSTED=TRUE needs the caller itself logged in as security officer");
        if (!policy_is_key_class(cls))
                return ALLOW;

        if (cls == CKO_PRIVATE_KEY) {
                if (t->sensitive == 0)
                        return refuse(no, "a private key must stay sensitive");
                if (t->extractable == 1)
                        return refuse(no, "a private key must not be extractable");
                add.sensitive = creating && t->sensitive == POLICY_UNSET;
                add.unextractable = creating && t->extractable == POLICY_UNSET;
        } else {
                if (secret_must_be_sensitive(origin, source)) {
                        if (t->sensitive == 0)
                                return refuse(no, "a key made from a sensitive key must stay sensitive");
                        add.sensitive = creating && t->sensitive == POLICY_UNSET;
                }
                if (source && !creating && t->extractable == 1 && !source->extractable)
                        return refuse(no, "CKA_EXTRACTABLE cannot be turned back on");
        }
        if (source && !creating && source->sensitive && t->decrypt == 1 && !source->decrypt)
                return refuse(no,
                              "a sensitive key that could not decrypt may have wrapped keys: it may not start to "
                              "decrypt");
        if (ret_add)
                *ret_add = add;
        return ALLOW;
}

PolicyDecision policy_key_created(KeyOrigin origin, const KeyFacts *created, const KeyFacts *source)
{
        if (created->cls == CKO_PRIVATE_KEY && (!created->sensitive || created->extractable))
                return refuse(CKR_ATTRIBUTE_VALUE_INVALID,
                              "the backend made a private key that is not sensitive or is extractable");
        if (created->cls == CKO_SECRET_KEY && !created->sensitive && secret_must_be_sensitive(origin, source))
                return refuse(CKR_ATTRIBUTE_VALUE_INVALID, "the backend made a secret key that must be sensitive "
                                                           "but is not");
        return ALLOW;
}

PolicyDecision policy_wrap(const KeyFacts *wrapping_key, const KeyFacts *key)
{
        if (key->cls == CKO_PRIVATE_KEY)
                return refuse(CKR_KEY_UNEXTRACTABLE, "private keys never leave the token");
        if (!key->sensitive)
                return ALLOW;
        if (wrapping_key->trusted)
                return ALLOW;
        if (wrapping_key->cls != CKO_SECRET_KEY)
                return refuse(CKR_KEY_NOT_WRAPPABLE,
                              "a sensitive key is wrapped only with a trusted key or a secret key that never left "
                              "the token");
        if (!wrapping_key->local || !wrapping_key->always_sensitive || !wrapping_key->never_extractable)
                return refuse(CKR_KEY_NOT_WRAPPABLE,
                              "the wrapping key's value has been outside the token (not generated there, or once "
                              "readable or extractable)");
        if (wrapping_key->decrypt)
                return refuse(CKR_KEY_NOT_WRAPPABLE,
                              "the wrapping key can also decrypt, which would reveal the wrapped key");
        return ALLOW;
}

bool policy_attribute_is_key_material(CK_ATTRIBUTE_TYPE type)
{
        switch (type) {
        case CKA_VALUE:
        case CKA_PRIVATE_EXPONENT:
        case CKA_PRIME_1:
        case CKA_PRIME_2:
        case CKA_EXPONENT_1:
        case CKA_EXPONENT_2:
        case CKA_COEFFICIENT:
                return true;
        default:
                return false;
        }
}

PolicyDecision policy_attribute_read(const KeyFacts *object, CK_ATTRIBUTE_TYPE type)
{
        if (!policy_attribute_is_key_material(type) || !policy_is_key_class(object->cls))
                return ALLOW;
        if (object->cls == CKO_PRIVATE_KEY)
                return refuse(CKR_ATTRIBUTE_SENSITIVE, "private key material never leaves the token");
        if (object->sensitive || !object->extractable)
                return refuse(CKR_ATTRIBUTE_SENSITIVE, "the key is sensitive or not extractable");
        return ALLOW;
}

/* ---- token classes ---- */

/* A space-padded PKCS#11 string as a C string without the padding. */
static void trimmed(const CK_UTF8CHAR *p, size_t n, char *out)
{
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\0'))
                n--;
        memcpy(out, p, n);
        out[n] = '\0';
}

static bool pattern_matches(const char *pattern, const char *s)
{
        return !pattern || fnmatch(pattern, s, 0) == 0;
}

int policy_token_class(const TokenClass *classes, size_t n, const CK_TOKEN_INFO *info)
{
        char manufacturer[sizeof(info->manufacturerID) + 1], model[sizeof(info->model) + 1],
                label[sizeof(info->label) + 1];

        trimmed(info->manufacturerID, sizeof(info->manufacturerID), manufacturer);
        trimmed(info->model, sizeof(info->model), model);
        trimmed(info->label, sizeof(info->label), label);
        for (size_t i = 0; i < n && i < INT_MAX; i++)
                if (pattern_matches(classes[i].match_manufacturer, manufacturer) &&
                    pattern_matches(classes[i].match_model, model) && pattern_matches(classes[i].match_label, label))
                        return (int) i;
        return -1;
}

PolicyDecision policy_token_operation(const TokenClass *c, TokenOperation op)
{
        if (!c)
                return ALLOW;
        switch (op) {
        case TOKEN_OP_INIT_TOKEN:
                if (c->deny_init_token)
                        return refuse(CKR_FUNCTION_REJECTED, "the token's class reserves token initialisation");
                break;
        case TOKEN_OP_INIT_PIN:
                if (c->deny_init_pin)
                        return refuse(CKR_FUNCTION_REJECTED, "the token's class reserves setting the user PIN");
                break;
        case TOKEN_OP_SO_LOGIN:
                if (c->deny_so_login)
                        return refuse(CKR_FUNCTION_REJECTED, "the token's class reserves security officer login");
                break;
        case TOKEN_OP_KEY_GENERATION:
                if (c->deny_key_generation)
                        return refuse(CKR_FUNCTION_REJECTED, "the token's class reserves key generation");
                break;
        default:
                return refuse(CKR_FUNCTION_REJECTED, "unknown operation");
        }
        return ALLOW;
}

/* ---- sessions ---- */

PolicyDecision policy_session_open(unsigned open, unsigned limit)
{
        if (limit > 0 && open >= limit)
                return refuse(CKR_SESSION_COUNT, "the user already has as many sessions as [limits] "
                                                 "sessions_per_uid allows");
        return ALLOW;
}

/* ---- PIN tries ---- */

#define PIN_TRIES_MAX 3U

unsigned policy_pin_tries_allowed(CK_FLAGS token_flags)
{
        if (token_flags & CKF_USER_PIN_LOCKED)
                return 0;
        if (token_flags & CKF_USER_PIN_FINAL_TRY)
                return 1;
        if (token_flags & CKF_USER_PIN_COUNT_LOW)
                return PIN_TRIES_MAX - 1;
        return PIN_TRIES_MAX;
}

PolicyDecision policy_pin_check(unsigned failures, CK_FLAGS token_flags)
{
        if (failures >= policy_pin_tries_allowed(token_flags))
                return refuse(CKR_PIN_LOCKED, "too many wrong PINs while the token is logged in; the PIN is "
                                              "checked again once every client has logged out");
        return ALLOW;
}

CK_FLAGS policy_pin_flags(CK_FLAGS token_flags, unsigned failures)
{
        unsigned allowed = policy_pin_tries_allowed(token_flags);

        if (failures == 0)
                return token_flags;
        token_flags |= CKF_USER_PIN_COUNT_LOW;
        if (failures + 1 >= allowed)
                token_flags |= CKF_USER_PIN_FINAL_TRY;
        return token_flags;
}

/* ---- custody ---- */

PolicyDecision policy_custody(const CustodyFacts *f, int64_t *ret_recheck_at)
{
        int64_t recheck = POLICY_TIME_NEVER;
        PolicyDecision d = ALLOW;

        if (!f->has_record) {
                if (!f->unknown_allowed)
                        d = refuse(CKR_TOKEN_NOT_RECOGNIZED,
                                   "the token has no custody record and [policy] unknown_tokens is deny");
        } else if (f->state != CUSTODY_STATE_ACTIVE) {
                switch (f->state) {
                case CUSTODY_STATE_LOST:
                        d = refuse(CKR_TOKEN_NOT_RECOGNIZED, "the token is reported lost");
                        break;
                case CUSTODY_STATE_REVOKED:
                        d = refuse(CKR_TOKEN_NOT_RECOGNIZED, "the token is revoked");
                        break;
                case CUSTODY_STATE_RETURNED:
                        d = refuse(CKR_TOKEN_NOT_RECOGNIZED, "the token was returned");
                        break;
                case CUSTODY_STATE_LOCKED:
                        d = refuse(CKR_TOKEN_NOT_RECOGNIZED, "the token is locked until it is recovered");
                        break;
                default:
                        d = refuse(CKR_TOKEN_NOT_RECOGNIZED, "the custody record is in an unknown state");
                        break;
                }
        } else if (!f->caller_is_holder)
                d = refuse(CKR_TOKEN_NOT_RECOGNIZED, "the caller is not the token's holder");
        else if (f->now < f->valid_from) {
                d = refuse(CKR_TOKEN_NOT_RECOGNIZED, "the custody record is not valid yet");
                recheck = f->valid_from;
        } else if (f->valid_until > 0 && f->now >= f->valid_until)
                d = refuse(CKR_TOKEN_NOT_RECOGNIZED, "the custody record's validity has ended");
        else if (f->valid_until > 0)
                recheck = f->valid_until;

        if (ret_recheck_at)
                *ret_recheck_at = recheck;
        return d;
}

const char *policy_custody_transition(bool has_record, CustodyState current, CustodyOp op)
{
        switch (op) {
        case CUSTODY_OP_ASSIGN:
                if (!has_record || current == CUSTODY_STATE_RETURNED || current == CUSTODY_STATE_REVOKED)
                        return NULL;
                return "the token already has a custody record that has not ended; hand it over, or record its "
                       "return, first";
        case CUSTODY_OP_HANDOVER:
                if (has_record && current == CUSTODY_STATE_ACTIVE)
                        return NULL;
                return "only an active token can be handed over";
        case CUSTODY_OP_REPORT_LOST:
                if (has_record && (current == CUSTODY_STATE_ACTIVE || current == CUSTODY_STATE_LOCKED))
                        return NULL;
                return "only an active or locked token can be reported lost";
        case CUSTODY_OP_REVOKE:
                if (has_record && current != CUSTODY_STATE_REVOKED)
                        return NULL;
                return has_record ? "the token is already revoked" : "the token has no custody record to revoke";
        case CUSTODY_OP_RETURN:
                if (has_record && (current == CUSTODY_STATE_ACTIVE || current == CUSTODY_STATE_LOST ||
                                   current == CUSTODY_STATE_LOCKED))
                        return NULL;
                return "only an active, lost or locked token can be returned";
        default:
                return "unknown operation";
        }
}

CustodyState policy_custody_op_state(CustodyOp op)
{
        switch (op) {
        case CUSTODY_OP_REPORT_LOST:
                return CUSTODY_STATE_LOST;
        case CUSTODY_OP_REVOKE:
                return CUSTODY_STATE_REVOKED;
        case CUSTODY_OP_RETURN:
                return CUSTODY_STATE_RETURNED;
        default:
                return CUSTODY_STATE_ACTIVE;
        }
}

bool policy_holder_valid(const char *holder)
{
        const char *name;
        size_t n;

        if (!holder)
                return false;
        name = holder[0] == '@' ? holder + 1 : holder;
        n = strlen(name);
        if (n == 0 || n > 255)
                return false;
        if (!(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z')))
                return false;
        for (size_t i = 1; i < n; i++) {
                char c = name[i];

                if (c == '$' && i == n - 1)
                        break;
                if (!(c == '_' || c == '-' || c == '.' || c == '@' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9')))
                        return false;
        }
        return true;
}

/* ---- PINs ---- */

/* Factory defaults and the PINs people choose first; compared without case. */
static const char *const weak_pins[] = {
        "0000",     "1111",     "1234",     "4321",     "000000",   "111111",   "123456",   "654321",
        "123123",   "112233",   "121212",   "123321",   "147258",   "159753",   "00000000", "11111111",
        "12345678", "87654321", "88888888", "12341234", "11223344", "1234567890", "0123456789", "password",
        "passw0rd", "changeme", "admin123", "qwerty",   "qwertyui", "abc123",   "abcd1234", "1qaz2wsx",
        "user1234", "pin12345", "ePass2003", "20032003", "66666666", "99999999", "12344321", "147258369",
};

static int char_class_value(uint8_t c, int *ret_class)
{
        if (c >= '0' && c <= '9') {
                *ret_class = 0;
                return c - '0';
        }
        if (c >= 'a' && c <= 'z') {
                *ret_class = 1;
                return c - 'a';
        }
        if (c >= 'A' && c <= 'Z') {
                *ret_class = 2;
                return c - 'A';
        }
        *ret_class = -1;
        return -1;
}

/* An ascending or descending run of digits (wrapping 9 -> 0) or of letters (no wrap) over the whole PIN. */
static bool pin_is_run(const uint8_t *pin, size_t len)
{
        for (int step = -1; step <= 1; step += 2) {
                bool run = true;

                for (size_t i = 1; i < len && run; i++) {
                        int ca, cb, a = char_class_value(pin[i - 1], &ca), b = char_class_value(pin[i], &cb);

                        if (ca < 0 || ca != cb)
                                run = false;
                        else if (ca == 0)
                                run = (a + step + 10) % 10 == b;
                        else
                                run = a + step == b;
                }
                if (run)
                        return true;
        }
        return false;
}

static bool pin_is_weak(const uint8_t *pin, size_t len)
{
        for (size_t i = 0; i < ELEMENTSOF(weak_pins); i++)
                if (strlen(weak_pins[i]) == len && strncasecmp(weak_pins[i], (const char *) pin, len) == 0)
                        return true;
        return false;
}

PolicyDecision policy_pin_quality(const uint8_t *pin, size_t len, const uint8_t *old, size_t old_len,
                                  unsigned min_length)
{
        bool repeated = true;

        if (!pin || len < min_length || len == 0) {
                /* The reason is a constant: the minimum itself is in kysod.conf and kysoctl says it. */
                return refuse(CKR_PIN_LEN_RANGE, "the new PIN is shorter than [pin] min_length allows");
        }
        for (size_t i = 1; i < len; i++)
                repeated = repeated && pin[i] == pin[0];
        if (repeated)
                return refuse(CKR_PIN_INVALID, "the new PIN is one character repeated");
        if (len >= 3 && pin_is_run(pin, len))
                return refuse(CKR_PIN_INVALID, "the new PIN is an ascending or descending sequence of digits or letters");
        if (pin_is_weak(pin, len))
                return refuse(CKR_PIN_INVALID, "the new PIN is a known factory default or a common PIN");
        if (old && old_len == len && memcmp(old, pin, len) == 0)
                return refuse(CKR_PIN_INVALID, "the new PIN is the same as the old one");
        return ALLOW;
}

static const char *const pin_state_names[_PIN_STATE_MAX] = {
        [PIN_STATE_OK] = "ok",
        [PIN_STATE_EXPIRING] = "expiring",
        [PIN_STATE_COUNT_LOW] = "count-low",
        [PIN_STATE_FINAL_TRY] = "final-try",
        [PIN_STATE_CHANGE_REQUIRED] = "change-required",
        [PIN_STATE_EXPIRED] = "expired",
        [PIN_STATE_LOCKED] = "locked",
};

const char *pin_state_to_string(PinState s)
{
        return s >= 0 && s < _PIN_STATE_MAX ? pin_state_names[s] : NULL;
}

const char *pin_mode_to_string(PinMode m)
{
        return m == PIN_MODE_WARN ? "warn" : m == PIN_MODE_ENFORCE ? "enforce" : NULL;
}

PinMode pin_mode_from_string(const char *s)
{
        if (s && streq(s, "warn"))
                return PIN_MODE_WARN;
        if (s && streq(s, "enforce"))
                return PIN_MODE_ENFORCE;
        return _PIN_MODE_INVALID;
}

#define DAY_SECONDS INT64_C(86400)

PinVerdict policy_pin_age(const PinFacts *f)
{
        PinVerdict v = { .state = PIN_STATE_OK, .login_rv = CKR_OK };
        int64_t base = f->changed_at > 0 ? f->changed_at : f->assigned_at;
        PinState age = PIN_STATE_OK;

        v.due_at = base > 0 ? base + (int64_t) f->max_age_days * DAY_SECONDS : 0;
        if (v.due_at == 0 || f->now >= v.due_at)
                age = PIN_STATE_EXPIRED;
        else if (f->now >= v.due_at - (int64_t) f->warn_days * DAY_SECONDS)
                age = PIN_STATE_EXPIRING;

        /* The most pressing state wins; the enum is in that order. */
        if (f->token_flags & CKF_USER_PIN_LOCKED)
                v.state = PIN_STATE_LOCKED;
        else if (age == PIN_STATE_EXPIRED)
                v.state = PIN_STATE_EXPIRED;
        else if (f->change_required)
                v.state = PIN_STATE_CHANGE_REQUIRED;
        else if (f->token_flags & CKF_USER_PIN_FINAL_TRY)
                v.state = PIN_STATE_FINAL_TRY;
        else if (f->token_flags & CKF_USER_PIN_COUNT_LOW)
                v.state = PIN_STATE_COUNT_LOW;
        else
                v.state = age;

        /* A handover's demand holds in either mode; age is enforced only in enforce mode. */
        if (f->change_required) {
                v.login_rv = CKR_PIN_EXPIRED;
                v.to_be_changed = true;
                v.reason = "the token was handed over and its new holder has not changed the PIN yet";
        }
        if (age == PIN_STATE_EXPIRED) {
                if (f->mode == PIN_MODE_ENFORCE) {
                        v.login_rv = CKR_PIN_EXPIRED;
                        v.to_be_changed = true;
                }
                if (!v.reason)
                        v.reason = v.due_at == 0 ? "the PIN has never been changed through kyso and the token has "
                                                   "no custody assignment to count from"
                                                 : "the PIN is older than [pin] max_age_days";
        } else if (age == PIN_STATE_EXPIRING && !v.reason)
                v.reason = "the PIN must be changed soon ([pin] warn_days before it is due)";
        return v;
}
