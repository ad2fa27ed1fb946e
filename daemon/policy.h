/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Policy decisions of the broker, as pure functions: facts in, a decision
 * (and a reason for the log) out, no I/O. They are tested as tables
 * (tests/unit/test-policy.c).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkcs11.h"
#include "store.h"

typedef struct PolicyDecision {
        CK_RV rv;           /* CKR_OK: allowed */
        const char *reason; /* why not, for the log */
} PolicyDecision;

/*
 * May a mechanism parameter go to a backend as the client sent it? A
 * parameter the codec rebuilt as its structure is safe. Raw bytes are safe
 * only for mechanisms whose parameter is a byte string (an IV, a public
 * value): for any other, the bytes could hold pointers the backend would
 * follow inside the daemon.
 *
 * struct_size is the size of the structure the codec knows for the
 * mechanism (0 if none); len is ulParameterLen as it arrived.
 */
PolicyDecision policy_mechanism_parameter(CK_MECHANISM_TYPE mechanism, bool has_parameter, size_t struct_size,
                                          size_t len);

/* ---- Key protection ----
 *
 * Whatever a backend would allow, kyso keeps key material in the token. The
 * rules, for objects of class CKO_PRIVATE_KEY and CKO_SECRET_KEY ("keys"):
 *
 * K1  A private key is always sensitive and never extractable. A template
 *     (C_CreateObject, C_GenerateKeyPair, C_UnwrapKey, C_DeriveKey,
 *     C_CopyObject, C_SetAttributeValue) with CKA_SENSITIVE=FALSE or
 *     CKA_EXTRACTABLE=TRUE for a private key is refused; when a creating
 *     template leaves them out, kyso adds CKA_SENSITIVE=TRUE and
 *     CKA_EXTRACTABLE=FALSE, so a backend's defaults do not matter. A private
 *     key is never wrapped (CKR_KEY_UNEXTRACTABLE), whatever the backend says
 *     of it.
 * K2  A secret key made from another key inherits its protection: it must be
 *     sensitive when made by C_UnwrapKey with a sensitive unwrapping key
 *     (private keys always are), by C_DeriveKey from a sensitive secret base
 *     key (CONCATENATE_BASE_AND_DATA, EXTRACT_KEY_FROM_KEY and the like would
 *     hand out the base's bits), by C_CopyObject of a sensitive key; a key that
 *     cannot be judged counts as sensitive. CKA_SENSITIVE=FALSE is then
 *     refused, and kyso adds CKA_SENSITIVE=TRUE when the template leaves it
 *     out. Free choice, as the backend defaults, for: secret keys the client
 *     imports with C_CreateObject (it supplied CKA_VALUE), secret keys from
 *     C_GenerateKey (fresh random bits that reveal no other key;
 *     pkcs11-tool --keygen asks for CKA_SENSITIVE=FALSE), and the result of
 *     key agreement with a private key (ECDH, DH: a secret the peer holds
 *     too; pkcs11-tool --derive and libp11 read it). Such readable keys never
 *     protect sensitive ones (W1 wants CKA_ALWAYS_SENSITIVE). CKA_EXTRACTABLE
 *     =TRUE is allowed on secret keys (wrapping needs it; W1 keeps wrapping
 *     from revealing a sensitive key).
 * K3  C_SetAttributeValue and C_CopyObject never turn CKA_SENSITIVE from TRUE
 *     to FALSE, CKA_EXTRACTABLE from FALSE to TRUE, nor CKA_DECRYPT from FALSE
 *     to TRUE on a sensitive key (a key that could not decrypt may have been
 *     a wrapping key under W1; letting it, or a copy of it, decrypt would
 *     undo W1).
 * K4  CKA_TRUSTED=TRUE in any template needs the caller itself logged in as
 *     security officer (the token would take another client's SO login).
 * W1  C_WrapKey of a sensitive key (or one that cannot be judged) is refused
 *     (CKR_KEY_NOT_WRAPPABLE) unless the wrapping key has CKA_TRUSTED=TRUE,
 *     or is a secret key whose value has never been outside the token and
 *     that cannot decrypt: CKA_LOCAL, CKA_ALWAYS_SENSITIVE and
 *     CKA_NEVER_EXTRACTABLE TRUE, CKA_DECRYPT FALSE. This stops Clulow's
 *     wrap-then-decrypt (wrap with K, C_Decrypt with K), wrapping under a key
 *     the client imported or derived (it knows the value) and under a public
 *     key (the client may hold the private half, or the token's private half
 *     may decrypt).
 * R1  C_GetAttributeValue never returns key material (CKA_VALUE,
 *     CKA_PRIVATE_EXPONENT, CKA_PRIME_1/2, CKA_EXPONENT_1/2, CKA_COEFFICIENT)
 *     of a private key, nor of a secret key that is sensitive or not
 *     extractable (or cannot be judged): the value is blanked to
 *     CK_UNAVAILABLE_INFORMATION and the call answers CKR_ATTRIBUTE_SENSITIVE,
 *     even when the backend handed it out.
 *
 * Refused templates answer CKR_ATTRIBUTE_VALUE_INVALID when they make an
 * object, CKR_ATTRIBUTE_READ_ONLY when they change or copy one, as the
 * specification answers for attributes that cannot take the value.
 */

#define POLICY_UNSET (-1)

/* What a template asks for: each flag POLICY_UNSET when absent, else 0 or 1. */
typedef struct KeyTemplate {
        CK_OBJECT_CLASS cls; /* CK_UNAVAILABLE_INFORMATION when absent */
        int sensitive;
        int extractable;
        int decrypt;
        int trusted;
} KeyTemplate;

/* What the backend says of an existing object. Unknown attributes of a key take the safe side (see
 * policy_key_facts_unknown()). */
typedef struct KeyFacts {
        CK_OBJECT_CLASS cls;
        bool sensitive;
        bool extractable;
        bool local;
        bool always_sensitive;
        bool never_extractable;
        bool decrypt;
        bool trusted;
} KeyFacts;

typedef enum KeyOrigin {
        KEY_ORIGIN_CREATE,   /* C_CreateObject */
        KEY_ORIGIN_GENERATE, /* C_GenerateKey, C_GenerateKeyPair */
        KEY_ORIGIN_UNWRAP,   /* C_UnwrapKey: source is the unwrapping key */
        KEY_ORIGIN_DERIVE,   /* C_DeriveKey: source is the base key */
        KEY_ORIGIN_COPY,     /* C_CopyObject: source is the original */
        KEY_ORIGIN_SET,      /* C_SetAttributeValue: source is the object as it is */
        _KEY_ORIGIN_MAX,
        _KEY_ORIGIN_INVALID = -EINVAL,
} KeyOrigin;

/* What kyso adds to a creating template that leaves these out. */
typedef struct KeyTemplateAdditions {
        bool sensitive;     /* CKA_SENSITIVE=TRUE */
        bool unextractable; /* CKA_EXTRACTABLE=FALSE */
} KeyTemplateAdditions;

bool policy_is_key_class(CK_OBJECT_CLASS cls);

/* Reads the attributes the rules look at from a template; values of a wrong size count as absent. */
void policy_key_template_read(const CK_ATTRIBUTE *t, CK_ULONG n, KeyTemplate *ret);

/* Facts for a key whose attributes could not be read: sensitive, unextractable, not trusted, may decrypt. */
KeyFacts policy_key_facts_unknown(CK_OBJECT_CLASS cls);

/*
 * Rules K1-K4 for one template. cls is the class of the object the template
 * makes or changes (for C_GenerateKey CKO_SECRET_KEY unless the template
 * says otherwise, for the private template of C_GenerateKeyPair
 * CKO_PRIVATE_KEY, for copies and changes the source's class). source is
 * NULL for CREATE and GENERATE. ret_add (may be NULL) gets what kyso adds to
 * the template when the call is allowed.
 */
PolicyDecision policy_key_template(KeyOrigin origin, CK_OBJECT_CLASS cls, const KeyTemplate *t,
                                   const KeyFacts *source, bool caller_is_so, KeyTemplateAdditions *ret_add);

/* K1/K2 once more on the object the backend made, in case it ignored the template. */
PolicyDecision policy_key_created(KeyOrigin origin, const KeyFacts *created, const KeyFacts *source);

/* Rule W1. */
PolicyDecision policy_wrap(const KeyFacts *wrapping_key, const KeyFacts *key);

/* Whether an attribute type holds key material (rule R1 looks only at these). */
bool policy_attribute_is_key_material(CK_ATTRIBUTE_TYPE type);

/* Rule R1 for one attribute of an object. */
PolicyDecision policy_attribute_read(const KeyFacts *object, CK_ATTRIBUTE_TYPE type);

/* ---- Token classes ----
 *
 * A token belongs to the first [class:NAME] of kysod.conf whose patterns
 * (fnmatch(3), no flags) all match the blank-trimmed manufacturerID, model
 * and label of its CK_TOKEN_INFO; an unset pattern matches anything. The
 * class can deny C_InitToken, C_InitPIN, C_Login/C_LoginUser as CKU_SO and
 * C_GenerateKey/C_GenerateKeyPair: refused with CKR_FUNCTION_REJECTED.
 */
struct TokenClass;

typedef enum TokenOperation {
        TOKEN_OP_INIT_TOKEN,
        TOKEN_OP_INIT_PIN,
        TOKEN_OP_SO_LOGIN,
        TOKEN_OP_KEY_GENERATION,
        _TOKEN_OP_MAX,
        _TOKEN_OP_INVALID = -EINVAL,
} TokenOperation;

/* Index of the first class that matches the token, or -1. */
int policy_token_class(const struct TokenClass *classes, size_t n, const CK_TOKEN_INFO *info);

/* May the operation run on a token of this class (NULL: no class)? */
PolicyDecision policy_token_operation(const struct TokenClass *c, TokenOperation op);

/* ---- Sessions per uid ---- */

/* May a uid that holds `open` sessions open one more? limit 0 means no limit. */
PolicyDecision policy_session_open(unsigned open, unsigned limit);

/* ---- PIN tries ----
 *
 * While a token is logged in, a second client's PIN is checked against the
 * salted digest and never reaches the token, whose retry counter therefore
 * does not move. The broker counts these wrong PINs per slot (across all
 * clients) and allows at most policy_pin_tries_allowed() of them, as the
 * strictest token would (retry limits are 3, 10 or 15): 3 when the token
 * reports no trouble, 2 when it reports CKF_USER_PIN_COUNT_LOW, 1 with
 * CKF_USER_PIN_FINAL_TRY, 0 with CKF_USER_PIN_LOCKED. The token's own
 * counter never moves, so its final try stays untouched. At the limit,
 * every PIN (right or wrong) is refused
 * with CKR_PIN_LOCKED without being checked, and the refusal is logged, so
 * guessing cannot go on without the token counting: the count is reset only
 * by a correct PIN and when the token's login ends, and after that the next
 * PIN goes to the token itself, which counts it.
 *
 * C_GetTokenInfo passes the token's flags through unchanged (kyso never
 * reports CKF_USER_PIN_LOCKED of its own) and adds CKF_USER_PIN_COUNT_LOW
 * once the broker has counted a wrong PIN, and CKF_USER_PIN_FINAL_TRY when
 * the next wrong PIN reaches the limit (or it has been reached).
 */
unsigned policy_pin_tries_allowed(CK_FLAGS token_flags);

/* May a PIN be checked against the digest after `failures` wrong ones? */
PolicyDecision policy_pin_check(unsigned failures, CK_FLAGS token_flags);

/* The token flags a client is shown. */
CK_FLAGS policy_pin_flags(CK_FLAGS token_flags, unsigned failures);

/* ---- Custody ----
 *
 * Who may use a token (kysod.conf [policy], REGULATION.md Art. 4, 6, 7, 8):
 *
 * C1  A token with a custody record may be used only by its holder (the
 *     user, or a member of the group), only while the record is active and
 *     inside its validity window [valid_from, valid_until). Lost, revoked,
 *     returned and locked tokens are refused even to their holder.
 * C2  A token without a record follows [policy] unknown_tokens: deny (the
 *     production default) or allow.
 * C3  Admins are not exempt: the admin group manages custody, it does not
 *     use other people's tokens.
 *
 * Refusals answer CKR_TOKEN_NOT_RECOGNIZED. The decision also says when it
 * may change by time alone (recheck_at), so that the broker can keep it
 * for an open session and look again exactly when a window opens or ends.
 */
#define POLICY_TIME_NEVER INT64_MAX

typedef struct CustodyFacts {
        bool has_record;
        CustodyState state;
        bool caller_is_holder; /* the caller's uid is the holder, or a member of the holding group */
        int64_t valid_from;
        int64_t valid_until; /* 0: no end */
        int64_t now;
        bool unknown_allowed;
} CustodyFacts;

PolicyDecision policy_custody(const CustodyFacts *f, int64_t *ret_recheck_at);

/* Changes of custody an admin asks for. */
typedef enum CustodyOp {
        CUSTODY_OP_ASSIGN,
        CUSTODY_OP_HANDOVER,
        CUSTODY_OP_REPORT_LOST,
        CUSTODY_OP_REVOKE,
        CUSTODY_OP_RETURN,
        _CUSTODY_OP_MAX,
        _CUSTODY_OP_INVALID = -EINVAL,
} CustodyOp;

/*
 * May op apply to a token whose current record is in state `current`
 * (has_record false: none)? NULL if so, else why not. Assign needs no record,
 * or a returned or revoked one (a new decision after the old custody ended);
 * handover needs an active token; a token can be reported lost while active
 * or locked; revoked from any state but revoked; returned while active, lost
 * or locked.
 */
const char *policy_custody_transition(bool has_record, CustodyState current, CustodyOp op);

/* The state a successful op leaves (ASSIGN and HANDOVER: active). */
CustodyState policy_custody_op_state(CustodyOp op);

/*
 * Is a holder string well-formed: a user or group name, the group after '@' ("name" or "@name")? A name
 * is what local accounts and SSSD's use: a letter or '_' first, then letters, digits, '_', '-', '.' and
 * '@' (user@domain), a '$' only at the end, at most 255 bytes.
 */
bool policy_holder_valid(const char *holder);

/* ---- PINs (REGULATION.md Art. 21.3, 22.2) ----
 *
 * Quality, checked on C_SetPIN and C_InitPIN before the token sees the new PIN:
 *
 * Q1  At least min_length characters (CKR_PIN_LEN_RANGE).
 * Q2  Not one character repeated ("00000000"), not an ascending or descending run of digits or letters
 *     ("12345678", "87654321", "abcdefgh"; wrapping "90123456" counts too), not a known factory default
 *     or common PIN ("1234", "123456", "12345678", "11111111", "00000000", "88888888", "password", ...,
 *     compared without case) (CKR_PIN_INVALID).
 * Q3  Not the old PIN, when the old one is known (C_SetPIN) (CKR_PIN_INVALID).
 *
 * The reason names the rule in plain words, for the log and for kysoctl pin change, never the PIN.
 */
PolicyDecision policy_pin_quality(const uint8_t *pin, size_t len, const uint8_t *old, size_t old_len,
                                  unsigned min_length);

/*
 * Age (Art. 21.3: changed at least every 6 months). The PIN's age counts from its last change through
 * kysod, else from the token's custody assignment; with neither it is due now.
 */
typedef enum PinMode {
        PIN_MODE_WARN,    /* log and signal; logins go on */
        PIN_MODE_ENFORCE, /* overdue: C_Login answers CKR_PIN_EXPIRED until C_SetPIN */
        _PIN_MODE_MAX,
        _PIN_MODE_INVALID = -EINVAL,
} PinMode;

typedef enum PinState {
        PIN_STATE_OK,
        PIN_STATE_EXPIRING,        /* in the warning window */
        PIN_STATE_COUNT_LOW,       /* the token says so */
        PIN_STATE_FINAL_TRY,       /* the token says so */
        PIN_STATE_CHANGE_REQUIRED, /* after a handover */
        PIN_STATE_EXPIRED,
        PIN_STATE_LOCKED,          /* the token says so */
        _PIN_STATE_MAX,
        _PIN_STATE_INVALID = -EINVAL,
} PinState;

typedef struct PinFacts {
        int64_t changed_at;  /* 0: never seen */
        int64_t assigned_at; /* 0: no custody record */
        int64_t now;
        unsigned max_age_days;
        unsigned warn_days;
        PinMode mode;
        bool change_required; /* the custody record says so (handover) */
        CK_FLAGS token_flags; /* what C_GetTokenInfo said last; 0 if unknown */
} PinFacts;

typedef struct PinVerdict {
        PinState state;
        int64_t due_at;          /* 0: no base date, due now */
        CK_RV login_rv;          /* CKR_OK, or CKR_PIN_EXPIRED when C_Login must be refused */
        bool to_be_changed;      /* C_GetTokenInfo shows CKF_USER_PIN_TO_BE_CHANGED */
        const char *reason;      /* for the log when not OK */
} PinVerdict;

PinVerdict policy_pin_age(const PinFacts *f);

/* "ok", "expiring", "count-low", "final-try", "change-required", "expired", "locked". */
const char *pin_state_to_string(PinState s);
/* "warn", "enforce". */
const char *pin_mode_to_string(PinMode m);
PinMode pin_mode_from_string(const char *s);
