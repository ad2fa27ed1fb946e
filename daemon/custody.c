/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "broker.h"
#include "bus.h"
#include "clock.h"
#include "custody-json.h"
#include "custody.h"
#include "hotplug.h"
#include "state.h"
#include "log.h"
#include "macro.h"

/* A token the registry knows: seen in a slot, or named by a custody record, or both. */
typedef struct Known {
        StoreToken token;
        bool present;
        CK_SLOT_ID slot;
        bool has_record;
        CustodyRecord record;
        int64_t pin_changed_at;   /* 0: no change seen */
        CK_FLAGS token_flags;     /* PIN counters, as C_GetTokenInfo last said */
        PinState pin_notified;    /* the state the bus was last told of */
        char usb_device[USB_DEVICE_DESCRIPTION_MAX]; /* the USB device it arrived in (hotplug.h), "" if not known */
} Known;

/*
 * registry_lock guards the known tokens; the state lock (state_acquire()) the database and the order of
 * changes (an admin's change holds it from reading the current record to updating memory, so two changes
 * cannot interleave). Order: the state lock before registry_lock. `store` is what state_acquire() gave,
 * used only while it is held.
 */
static pthread_rwlock_t registry_lock = PTHREAD_RWLOCK_INITIALIZER;
static Known *known;
static size_t n_known;
static uint64_t generation = 1;

static Store *store;

static CustodyConfig config;
static PinPolicy pin_policies[_CUSTODY_KIND_MAX + 1]; /* per kind; the last: tokens without a record */

int64_t custody_now(void)
{
        return clock_now();
}

uint64_t custody_generation(void)
{
        return __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
}

static void bump_generation_locked(void)
{
        __atomic_add_fetch(&generation, 1, __ATOMIC_RELEASE);
}

bool custody_unknown_allowed(void)
{
        return config.unknown_allowed;
}

bool custody_hides_refused(void)
{
        bool r;

        pthread_rwlock_rdlock(&registry_lock);
        r = config.hide_refused;
        pthread_rwlock_unlock(&registry_lock);
        return r;
}

const char *custody_admin_group(void)
{
        return config.admin_group ?: KYSO_ADMIN_GROUP_DEFAULT;
}

static Known *find_serial_locked(const char *serial)
{
        for (size_t i = 0; i < n_known; i++)
                if (streq(known[i].token.serial, serial))
                        return &known[i];
        return NULL;
}

static Known *find_slot_locked(CK_SLOT_ID slot)
{
        for (size_t i = 0; i < n_known; i++)
                if (known[i].present && known[i].slot == slot)
                        return &known[i];
        return NULL;
}

static const PinPolicy *pin_policy_locked(const Known *k)
{
        return &pin_policies[k && k->has_record ? k->record.kind : _CUSTODY_KIND_MAX];
}

static PinVerdict pin_verdict_locked(const Known *k, int64_t now)
{
        const PinPolicy *p = pin_policy_locked(k);
        bool active = k->has_record && k->record.state == CUSTODY_STATE_ACTIVE;
        PinFacts f = {
                .changed_at = k->pin_changed_at,
                /* The holder got the token when the record's validity began (or, without a date, when it was
                 * recorded). */
                .assigned_at = !k->has_record ? 0 : k->record.valid_from > 0 ? k->record.valid_from
                                                                             : k->record.created_at,
                .now = now,
                .max_age_days = (unsigned) p->max_age_days,
                .warn_days = (unsigned) p->warn_days,
                .mode = (PinMode) p->mode,
                .change_required = active && k->record.pin_change_required,
                .token_flags = k->token_flags,
        };

        return policy_pin_age(&f);
}

/* A new entry for serial, with the other strings empty. Call with registry_lock held for writing. */
static Known *add_known_locked(const char *serial)
{
        Known *n = realloc(known, (n_known + 1) * sizeof(Known)), *k;

        if (!n)
                return NULL;
        known = n;
        k = &known[n_known];
        *k = (Known) {
                .token = {
                        .serial = strdup(serial),
                        .manufacturer = strdup(""),
                        .model = strdup(""),
                        .label = strdup(""),
                },
        };
        if (!k->token.serial || !k->token.manufacturer || !k->token.model || !k->token.label) {
                store_token_done(&k->token);
                return NULL;
        }
        n_known++;
        return k;
}

static int replace_string(char **p, const char *v)
{
        char *n = strdup(v);

        if (!n)
                return -ENOMEM;
        free(*p);
        *p = n;
        return 0;
}

/*
 * Puts a record in memory as the token's current one (a copy). Returns 1 when the token was not known
 * before. Call with registry_lock held for writing.
 */
static int set_record_locked(const CustodyRecord *rec)
{
        CustodyRecord copy;
        Known *k = find_serial_locked(rec->serial);
        bool added = false;
        int r;

        r = custody_record_copy(rec, &copy);
        if (r < 0)
                return r;
        if (!k) {
                k = add_known_locked(rec->serial);
                if (!k) {
                        custody_record_done(&copy);
                        return -ENOMEM;
                }
                added = true;
        }
        if (k->has_record)
                custody_record_done(&k->record);
        k->record = copy;
        k->has_record = true;
        return added;
}

void custody_reconfigure(const KysodConfig *kc)
{
        char *group = kc->custody.admin_group ? strdup(kc->custody.admin_group) : NULL;
        CK_SLOT_ID *slots;
        size_t n = 0;

        pthread_rwlock_wrlock(&registry_lock);
        free(config.admin_group);
        config = kc->custody;
        config.admin_group = group;
        for (int k = 0; k <= _CUSTODY_KIND_MAX; k++)
                pin_policies[k] = kysod_config_pin_policy(kc, k < _CUSTODY_KIND_MAX ? k : -1);
        bump_generation_locked();
        slots = calloc(n_known + 1, sizeof(CK_SLOT_ID));
        for (size_t i = 0; slots && i < n_known; i++)
                if (known[i].present)
                        slots[n++] = known[i].slot;
        pthread_rwlock_unlock(&registry_lock);

        /* unknown_tokens may have turned to deny: sessions it forbids now end, as for any custody change. */
        for (size_t i = 0; i < n; i++)
                broker_custody_changed(slots[i]);
        free(slots);
        custody_pin_sweep();
}

int custody_init(const char *db_path, const KysodConfig *kc)
{
        const CustodyConfig *cfg = &kc->custody;
        StoreToken *tokens = NULL;
        CustodyRecord *recs = NULL;
        size_t n_tokens = 0, n_recs = 0;
        int r;

        config = *cfg;
        config.admin_group = cfg->admin_group ? strdup(cfg->admin_group) : NULL;
        for (int k = 0; k <= _CUSTODY_KIND_MAX; k++)
                pin_policies[k] = kysod_config_pin_policy(kc, k < _CUSTODY_KIND_MAX ? k : -1);

        store = state_acquire();
        r = store ? store_tokens(store, &tokens, &n_tokens) : -EBADF;
        if (r >= 0)
                r = store_custody_all(store, &recs, &n_recs);
        state_release();
        if (r < 0) {
                store_tokens_free(tokens, n_tokens);
                custody_records_free(recs, n_recs);
                return log_error_errno(r, "Failed to read the custody registry from %s: %m", db_path);
        }

        pthread_rwlock_wrlock(&registry_lock);
        known = calloc(n_tokens ? n_tokens : 1, sizeof(Known));
        if (known) {
                for (size_t i = 0; i < n_tokens; i++)
                        known[i].token = tokens[i]; /* moved */
                n_known = n_tokens;
                n_tokens = 0;
                for (size_t i = 0; i < n_recs && r >= 0; i++)
                        r = set_record_locked(&recs[i]);
        } else
                r = -ENOMEM;
        pthread_rwlock_unlock(&registry_lock);
        free(tokens); /* the strings moved */
        custody_records_free(recs, n_recs);
        if (r < 0)
                return log_oom();

        /* When each PIN was last changed (the state lock before the registry's). */
        store = state_acquire();
        pthread_rwlock_wrlock(&registry_lock);
        for (size_t i = 0; i < n_known && r >= 0; i++) {
                int k = store_pin_last_change(store, known[i].token.serial, &known[i].pin_changed_at);

                if (k < 0 && k != -ENOENT)
                        r = k;
        }
        pthread_rwlock_unlock(&registry_lock);
        state_release();
        if (r < 0)
                return log_error_errno(r, "Failed to read PIN change times from %s: %m", db_path);

        log_info("Custody registry %s: %zu known token(s), %zu with a custody record; unknown tokens are %s.",
                 db_path, n_known, n_recs, config.unknown_allowed ? "allowed" : "denied");
        return 0;
}

void custody_done(void)
{
        pthread_rwlock_wrlock(&registry_lock);
        for (size_t i = 0; i < n_known; i++) {
                store_token_done(&known[i].token);
                if (known[i].has_record)
                        custody_record_done(&known[i].record);
        }
        free(known);
        known = NULL;
        n_known = 0;
        pthread_rwlock_unlock(&registry_lock);

        free(config.admin_group);
        config.admin_group = NULL;
}

/* ---- tokens coming and going ---- */

static void trimmed(char *dst, const unsigned char *src, size_t n)
{
        while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0'))
                n--;
        memcpy(dst, src, n);
        dst[n] = '\0';
}

void custody_token_present(CK_SLOT_ID slot, const CK_TOKEN_INFO *info)
{
        char serial[sizeof(info->serialNumber) + 1], label[sizeof(info->label) + 1],
                manufacturer[sizeof(info->manufacturerID) + 1], model[sizeof(info->model) + 1];
        int64_t now = custody_now();
        bool arrived = false, added = false;
        Known *k, *other;
        int r = 0;

        trimmed(serial, info->serialNumber, sizeof(info->serialNumber));
        trimmed(label, info->label, sizeof(info->label));
        trimmed(manufacturer, info->manufacturerID, sizeof(info->manufacturerID));
        trimmed(model, info->model, sizeof(info->model));
        if (serial[0] == '\0') {
                /* An uninitialised token (SoftHSM2's free slot) has none yet; an initialised one should. */
                if (info->flags & CKF_TOKEN_INITIALIZED)
                        log_notice("Slot %lu: the token \"%s\" has no serial number, so it cannot have a custody "
                                   "record.",
                                   slot, label);
                return;
        }

        pthread_rwlock_wrlock(&registry_lock);
        other = find_slot_locked(slot);
        if (other && !streq(other->token.serial, serial))
                other->present = false; /* replaced without a removal seen in between */
        k = find_serial_locked(serial);
        if (!k) {
                k = add_known_locked(serial);
                added = k != NULL;
        }
        if (k) {
                arrived = !k->present || k->slot != slot;
                if (added || k->token.first_seen == 0)
                        k->token.first_seen = now;
                k->token.last_seen = now;
                if (arrived) {
                        UsbDevice d;

                        k->usb_device[0] = '\0';
                        if (hotplug_claim_recent(&d))
                                usb_device_describe(&d, k->usb_device, sizeof(k->usb_device));
                }
                k->present = true;
                k->slot = slot;
                if (replace_string(&k->token.label, label) < 0 ||
                    replace_string(&k->token.manufacturer, manufacturer) < 0 ||
                    replace_string(&k->token.model, model) < 0)
                        r = -ENOMEM;
        } else
                r = -ENOMEM;
        bump_generation_locked();
        pthread_rwlock_unlock(&registry_lock);
        if (r < 0) {
                log_oom();
                return;
        }

        if (arrived)
                log_info("Token %s (\"%s\", %s %s) in slot %lu.", serial, label, manufacturer, model, slot);

        store = state_acquire();
        r = store ? store_token_seen(store, serial, manufacturer, model, label, now) : 0;
        state_release();
        if (r < 0)
                log_warning_errno(r, "Failed to record that token %s was seen: %m", serial);

        if (added)
                bus_token_added(serial);
        if (arrived)
                bus_token_inserted(serial, label);
        else
                bus_token_changed(serial);
}

void custody_token_absent(CK_SLOT_ID slot)
{
        char *serial = NULL;
        Known *k;

        pthread_rwlock_wrlock(&registry_lock);
        k = find_slot_locked(slot);
        if (k) {
                k->present = false;
                k->usb_device[0] = '\0';
                serial = strdup(k->token.serial);
                bump_generation_locked();
        }
        pthread_rwlock_unlock(&registry_lock);
        if (!serial)
                return;
        log_info("Token %s left slot %lu.", serial, slot);
        bus_token_removed(serial);
        free(serial);
}

/* ---- decisions ---- */

CustodyVerdict custody_check(uid_t uid, CK_SLOT_ID slot)
{
        CustodyVerdict v = {};
        CustodyFacts f = { .now = custody_now() };
        char holder[260] = "";
        Known *k;

        pthread_rwlock_rdlock(&registry_lock);
        f.unknown_allowed = config.unknown_allowed;
        v.generation = custody_generation();
        k = find_slot_locked(slot);
        if (k) {
                snprintf(v.serial, sizeof(v.serial), "%s", k->token.serial);
                if (k->has_record) {
                        f.has_record = true;
                        f.state = k->record.state;
                        f.valid_from = k->record.valid_from;
                        f.valid_until = k->record.valid_until;
                        snprintf(holder, sizeof(holder), "%s", k->record.holder);
                }
        }
        pthread_rwlock_unlock(&registry_lock);

        /* The account database only when it can matter. */
        if (f.has_record && f.state == CUSTODY_STATE_ACTIVE)
                f.caller_is_holder = custody_uid_holds(uid, holder);
        v.decision = policy_custody(&f, &v.recheck_at);
        return v;
}

/* An admin's change, in the audit log. A failure is logged (the change itself is already in the database). */
static void audit_change(const char *event, uid_t by, const char *serial, const char *fmt, ...) _printf_(4, 5);
static void audit_change(const char *event, uid_t by, const char *serial, const char *fmt, ...)
{
        _cleanup_(freep) char *detail = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&detail, fmt, ap) < 0)
                detail = NULL;
        va_end(ap);
        (void) audit_log(&(AuditEntry) {
                .event = event,
                .uid = by,
                .pid = 0,
                .exe = "org.kyso1",
                .serial = serial,
                .result = "CKR_OK",
                .detail = detail,
        });
}

void custody_report_denied(const CustodyVerdict *v, uid_t uid, pid_t pid, const char *exe, CK_SLOT_ID slot,
                           const char *operation)
{
        _cleanup_(freep) char *detail = NULL;

        if (asprintf(&detail, "%s: %s", operation, v->decision.reason) < 0)
                detail = NULL;
        (void) audit_log(&(AuditEntry) {
                .event = "refused",
                .uid = uid,
                .pid = pid,
                .exe = exe,
                .serial = v->serial,
                .result = "CKR_TOKEN_NOT_RECOGNIZED",
                .detail = detail ?: v->decision.reason,
        });
        log_notice("Refused %s on token %s (slot %lu) to pid %d (uid %u): %s.", operation,
                   v->serial[0] ? v->serial : "(unknown)", slot, (int) pid, (unsigned) uid, v->decision.reason);
        bus_access_denied(v->serial, uid, pid, operation, v->decision.reason);
}

/* ---- the account database ---- */

bool custody_uid_holds(uid_t uid, const char *holder)
{
        _cleanup_(freep) char *buf = NULL, *gbuf = NULL;
        struct passwd pw, *pwp = NULL;
        struct group gr, *grp = NULL;
        long size = sysconf(_SC_GETPW_R_SIZE_MAX), gsize = sysconf(_SC_GETGR_R_SIZE_MAX);
        gid_t groups[256];
        int n = ELEMENTSOF(groups);

        if (!holder || !holder[0])
                return false;
        size = size > 0 ? size : 16384;
        gsize = gsize > 0 ? gsize : 16384;
        buf = malloc((size_t) size);
        if (!buf)
                return false;
        if (holder[0] != '@') {
                if (getpwnam_r(holder, &pw, buf, (size_t) size, &pwp) != 0 || !pwp)
                        return false;
                return pwp->pw_uid == uid;
        }

        gbuf = malloc((size_t) gsize);
        if (!gbuf || getgrnam_r(holder + 1, &gr, gbuf, (size_t) gsize, &grp) != 0 || !grp)
                return false;
        if (getpwuid_r(uid, &pw, buf, (size_t) size, &pwp) != 0 || !pwp)
                return false;
        if (pwp->pw_gid == grp->gr_gid)
                return true;
        /* Membership as the account database says, not as the calling process happens to carry it. */
        if (getgrouplist(pwp->pw_name, pwp->pw_gid, groups, &n) < 0)
                n = ELEMENTSOF(groups);
        for (int i = 0; i < n; i++)
                if (groups[i] == grp->gr_gid)
                        return true;
        return false;
}

bool custody_uid_is_admin(uid_t uid)
{
        char holder[40];

        if (uid == 0)
                return true;
        snprintf(holder, sizeof(holder), "@%s", custody_admin_group());
        return custody_uid_holds(uid, holder);
}

char *custody_user_name(uid_t uid)
{
        struct passwd pw, *pwp = NULL;
        char buf[4096], *name = NULL;

        if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) == 0 && pwp)
                return strdup(pwp->pw_name);
        if (asprintf(&name, "uid %u", (unsigned) uid) < 0)
                return NULL;
        return name;
}

/* ---- changes ---- */

static int set_error(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
static int set_error(char **ret_error, int r, const char *fmt, ...)
{
        va_list ap;

        if (ret_error) {
                free(*ret_error);
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return r;
}

static int store_error(char **ret_error, int r)
{
        return set_error(ret_error, r, "the state database could not be written (%s); nothing changed",
                         strerror(-r));
}

/*
 * After the store changed: reload serial's current record into memory, bump the generation, let the
 * broker close what the change forbids, tell the bus. Call with the state lock held; returns with it released.
 */
static int commit_change_unlock(const char *serial)
{
        CustodyRecord rec;
        CK_SLOT_ID slot = 0;
        bool present = false, added = false;
        Known *k;
        int r;

        r = store_custody_current(store, serial, &rec);
        if (r >= 0) {
                pthread_rwlock_wrlock(&registry_lock);
                r = set_record_locked(&rec);
                added = r > 0;
                k = find_serial_locked(serial);
                if (k) {
                        present = k->present;
                        slot = k->slot;
                }
                bump_generation_locked();
                pthread_rwlock_unlock(&registry_lock);
                custody_record_done(&rec);
        }
        state_release();
        if (r < 0)
                log_error_errno(r, "Failed to reload the custody record of %s: %m", serial);
        if (present)
                broker_custody_changed(slot);
        if (added)
                bus_token_added(serial);
        bus_token_changed(serial);
        return r < 0 ? r : 0;
}

int custody_assign(const CustodyRecord *rec, uid_t by, char **ret_error)
{
        _cleanup_(freep) char *who = custody_user_name(by);
        CustodyRecord current;
        const char *why;
        bool has;
        int r;

        why = custody_record_invalid(rec);
        if (why)
                return set_error(ret_error, -EINVAL, "%s", why);
        if (!who)
                return -ENOMEM;

        store = state_acquire();
        r = store_custody_current(store, rec->serial, &current);
        if (r < 0 && r != -ENOENT) {
                state_release();
                return store_error(ret_error, r);
        }
        has = r >= 0;
        why = policy_custody_transition(has, has ? current.state : CUSTODY_STATE_ACTIVE, CUSTODY_OP_ASSIGN);
        if (why) {
                r = set_error(ret_error, -EBUSY, "%s is %s, held by %s: %s", rec->serial,
                              custody_state_to_string(current.state), current.holder, why);
                custody_record_done(&current);
                state_release();
                return r;
        }
        if (has)
                custody_record_done(&current);
        r = store_custody_add(store, rec, custody_now(), who, NULL);
        if (r < 0) {
                state_release();
                return store_error(ret_error, r);
        }
        log_notice("Custody of token %s assigned to %s (%s, decision %s of %s) by %s.", rec->serial, rec->holder,
                   custody_kind_to_string(rec->kind), rec->decision_ref, rec->decision_date, who);
        (void) commit_change_unlock(rec->serial);
        audit_change("custody", by, rec->serial, "assigned to %s (%s), decision %s of %s", rec->holder,
                     custody_kind_to_string(rec->kind), rec->decision_ref, rec->decision_date);
        return 0;
}

/* Reads the current record for a change, checking the transition. Call with the state lock held. */
static int current_for(const char *serial, CustodyOp op, CustodyRecord *ret, char **ret_error)
{
        const char *why;
        int r;

        r = store_custody_current(store, serial, ret);
        if (r == -ENOENT) {
                bool known_token;

                pthread_rwlock_rdlock(&registry_lock);
                known_token = find_serial_locked(serial) != NULL;
                pthread_rwlock_unlock(&registry_lock);
                if (known_token)
                        return set_error(ret_error, -EBUSY, "token %s has no custody record: assign it first",
                                         serial);
                return set_error(ret_error, -ENOENT, "no token with serial %s is known", serial);
        }
        if (r < 0)
                return store_error(ret_error, r);
        why = policy_custody_transition(true, ret->state, op);
        if (why) {
                r = set_error(ret_error, -EBUSY, "token %s is %s: %s", serial, custody_state_to_string(ret->state),
                              why);
                custody_record_done(ret);
                return r;
        }
        return 0;
}

int custody_handover(const char *serial, const char *to, const char *minutes, int pin_change_required, uid_t by,
                     char **ret_error)
{
        _cleanup_(freep) char *who = custody_user_name(by);
        CustodyRecord current;
        bool pin = pin_change_required < 0 ? config.handover_requires_pin_change : pin_change_required > 0;
        int r;

        if (!policy_holder_valid(to))
                return set_error(ret_error, -EINVAL, "to: must be a user name or @group");
        if (!minutes || !minutes[0] || strlen(minutes) > 128 || strpbrk(minutes, "\n\r\t"))
                return set_error(ret_error, -EINVAL, "minutes: the handover minutes' reference is missing or too long");
        if (!who)
                return -ENOMEM;

        store = state_acquire();
        r = current_for(serial, CUSTODY_OP_HANDOVER, &current, ret_error);
        if (r < 0) {
                state_release();
                return r;
        }
        if (streq(current.holder, to)) {
                custody_record_done(&current);
                state_release();
                return set_error(ret_error, -EBUSY, "token %s is already held by %s", serial, to);
        }
        r = store_handover(store, serial, to, minutes, pin, custody_now(), who);
        if (r < 0) {
                custody_record_done(&current);
                state_release();
                return store_error(ret_error, r);
        }
        log_notice("Token %s handed over from %s to %s (minutes %s) by %s%s.", serial, current.holder, to, minutes,
                   who, pin ? "; the new holder must change the PIN" : "");
        (void) commit_change_unlock(serial);
        audit_change("handover", by, serial, "from %s to %s, minutes %s%s", current.holder, to, minutes,
                     pin ? "; PIN change required" : "");
        custody_record_done(&current);
        return 0;
}

int custody_change_state(const char *serial, CustodyOp op, const char *reason, uid_t by, char **ret_error)
{
        _cleanup_(freep) char *who = custody_user_name(by);
        CustodyState state = policy_custody_op_state(op);
        CustodyRecord current;
        int r;

        if (reason && (strlen(reason) > 256 || strpbrk(reason, "\n\r")))
                return set_error(ret_error, -EINVAL, "reason: at most 256 characters on one line");
        if (!who)
                return -ENOMEM;

        store = state_acquire();
        r = current_for(serial, op, &current, ret_error);
        if (r < 0) {
                state_release();
                return r;
        }
        r = store_custody_set_state(store, serial, state, reason && reason[0] ? reason : NULL, custody_now(), who);
        if (r < 0) {
                custody_record_done(&current);
                state_release();
                return store_error(ret_error, r);
        }
        log_notice("Token %s (held by %s) is now %s, recorded by %s%s%s.", serial, current.holder,
                   custody_state_to_string(state), who, reason && reason[0] ? ": " : "", reason ?: "");
        (void) commit_change_unlock(serial);
        audit_change("custody", by, serial, "%s (held by %s)%s%s", custody_state_to_string(state), current.holder,
                     reason && reason[0] ? ": " : "", reason ?: "");
        custody_record_done(&current);
        return 0;
}

int custody_export(char **ret_json)
{
        CustodyRecord *recs = NULL;
        size_t n = 0;
        int r;

        store = state_acquire();
        r = store_custody_all(store, &recs, &n);
        state_release();
        if (r < 0)
                return r;
        r = custody_json_export(recs, n, custody_now(), ret_json);
        custody_records_free(recs, n);
        return r;
}

int custody_import(const char *json, uid_t by, unsigned *ret_added, char **ret_error)
{
        _cleanup_(freep) char *who = custody_user_name(by);
        CustodyRecord *recs = NULL;
        size_t n = 0;
        int r;

        if (!who)
                return -ENOMEM;
        r = custody_json_parse(json, strlen(json), &recs, &n, ret_error);
        if (r < 0)
                return r;

        store = state_acquire();
        r = store_custody_import(store, recs, n, custody_now(), who);
        if (r < 0) {
                state_release();
                custody_records_free(recs, n);
                return store_error(ret_error, r);
        }
        log_notice("Imported %d custody record(s) of %zu in the document, by %s.", r, n, who);
        *ret_added = (unsigned) r;
        state_release();
        audit_change("custody", by, "", "imported %d record(s) of %zu", r, n);

        /* Each token the document named: its record may have changed. */
        for (size_t i = 0; i < n; i++) {
                store = state_acquire();
                (void) commit_change_unlock(recs[i].serial);
        }
        custody_records_free(recs, n);
        return 0;
}

/* ---- reading ---- */

static int compare_strings(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int custody_serials(char ***ret, size_t *ret_n)
{
        char **l;
        size_t n;

        pthread_rwlock_rdlock(&registry_lock);
        n = n_known;
        l = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; l && i < n; i++) {
                l[i] = strdup(known[i].token.serial);
                if (!l[i]) {
                        for (size_t j = 0; j < i; j++)
                                free(l[j]);
                        free(l);
                        l = NULL;
                }
        }
        pthread_rwlock_unlock(&registry_lock);
        if (!l)
                return -ENOMEM;
        qsort(l, n, sizeof(char *), compare_strings);
        *ret = l;
        *ret_n = n;
        return 0;
}

void token_view_done(TokenView *v)
{
        store_token_done(&v->token);
        if (v->has_record)
                custody_record_done(&v->record);
        handovers_free(v->handovers, v->n_handovers);
        store_certificates_free(v->certificates, v->n_certificates);
        *v = (TokenView) {};
}

int custody_view(const char *serial, bool with_extras, TokenView *ret)
{
        TokenView v = {};
        Known *k;
        int r = 0;

        pthread_rwlock_rdlock(&registry_lock);
        k = find_serial_locked(serial);
        if (!k)
                r = -ENOENT;
        else {
                v.token = (StoreToken) {
                        .serial = strdup(k->token.serial),
                        .manufacturer = strdup(k->token.manufacturer),
                        .model = strdup(k->token.model),
                        .label = strdup(k->token.label),
                        .first_seen = k->token.first_seen,
                        .last_seen = k->token.last_seen,
                };
                v.present = k->present;
                v.slot = k->present ? k->slot : 0;
                v.pin_changed_at = k->pin_changed_at;
                snprintf(v.usb_device, sizeof(v.usb_device), "%s", k->usb_device);
                v.pin = pin_verdict_locked(k, custody_now());
                v.pin_policy = *pin_policy_locked(k);
                if (!v.token.serial || !v.token.manufacturer || !v.token.model || !v.token.label)
                        r = -ENOMEM;
                if (r >= 0 && k->has_record) {
                        r = custody_record_copy(&k->record, &v.record);
                        v.has_record = r >= 0;
                }
        }
        pthread_rwlock_unlock(&registry_lock);

        if (r >= 0 && with_extras) {
                store = state_acquire();
                if (v.has_record)
                        r = store_handovers(store, serial, &v.handovers, &v.n_handovers);
                if (r >= 0)
                        r = store_certificates(store, serial, &v.certificates, &v.n_certificates);
                state_release();
        }
        if (r < 0) {
                token_view_done(&v);
                return r;
        }
        *ret = v;
        return 0;
}

/* ---- PINs ---- */

PinPolicy custody_pin_default(void)
{
        return pin_policies[_CUSTODY_KIND_MAX];
}

PinPolicy custody_pin_policy(CK_SLOT_ID slot)
{
        PinPolicy p;

        pthread_rwlock_rdlock(&registry_lock);
        p = *pin_policy_locked(find_slot_locked(slot));
        pthread_rwlock_unlock(&registry_lock);
        return p;
}

void custody_slot_serial(CK_SLOT_ID slot, char *serial)
{
        Known *k;

        pthread_rwlock_rdlock(&registry_lock);
        k = find_slot_locked(slot);
        snprintf(serial, 33, "%s", k ? k->token.serial : "");
        pthread_rwlock_unlock(&registry_lock);
}

PinVerdict custody_pin_check(CK_SLOT_ID slot, char *serial)
{
        PinVerdict v = { .state = PIN_STATE_OK, .login_rv = CKR_OK };
        int64_t now = custody_now();
        Known *k;

        pthread_rwlock_rdlock(&registry_lock);
        k = find_slot_locked(slot);
        /* A token kysod cannot tell apart (no serial) cannot be tracked: nothing to enforce. */
        if (k)
                v = pin_verdict_locked(k, now);
        if (serial)
                snprintf(serial, 33, "%s", k ? k->token.serial : "");
        pthread_rwlock_unlock(&registry_lock);
        return v;
}

void custody_pin_flags(CK_SLOT_ID slot, CK_FLAGS flags)
{
        const CK_FLAGS mask = CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED;
        bool changed = false;
        Known *k;

        pthread_rwlock_wrlock(&registry_lock);
        k = find_slot_locked(slot);
        if (k && (k->token_flags & mask) != (flags & mask)) {
                k->token_flags = flags & mask;
                changed = true;
        }
        pthread_rwlock_unlock(&registry_lock);
        if (changed)
                custody_pin_sweep();
}

void custody_pin_changed(CK_SLOT_ID slot, uid_t uid, const char *how)
{
        char serial[33] = "";
        bool required = false;
        int64_t now = custody_now();
        Known *k;
        int r;

        pthread_rwlock_wrlock(&registry_lock);
        k = find_slot_locked(slot);
        if (k) {
                snprintf(serial, sizeof(serial), "%s", k->token.serial);
                k->pin_changed_at = now;
                required = k->has_record && k->record.pin_change_required;
        }
        pthread_rwlock_unlock(&registry_lock);
        if (!serial[0])
                return;

        store = state_acquire();
        r = store ? store_pin_changed(store, serial, now, (uint32_t) uid, how) : -EBADF;
        if (r < 0)
                log_error_errno(r, "Failed to record the PIN change of token %s: %m", serial);
        if (required) {
                _cleanup_(freep) char *who = custody_user_name(uid);

                r = store_custody_set_pin_change_required(store, serial, false, now, who ?: "?");
                if (r < 0) {
                        log_error_errno(r, "Failed to record that the new holder of %s changed the PIN: %m", serial);
                        state_release();
                } else {
                        log_notice("Token %s: the new holder changed the PIN after the handover.", serial);
                        (void) commit_change_unlock(serial);
                }
        } else
                state_release();
        log_info("PIN of token %s changed (%s by uid %u).", serial, how, (unsigned) uid);
        custody_pin_sweep();
}

typedef struct PinNotice {
        char serial[33];
        PinState state;
        int64_t due_at;
        const char *reason;
} PinNotice;

void custody_pin_sweep(void)
{
        _cleanup_(freep) PinNotice *notices = NULL;
        int64_t now = custody_now();
        size_t n = 0;

        pthread_rwlock_wrlock(&registry_lock);
        notices = calloc(n_known + 1, sizeof(PinNotice));
        for (size_t i = 0; notices && i < n_known; i++) {
                PinVerdict v = pin_verdict_locked(&known[i], now);

                if (v.state == known[i].pin_notified)
                        continue;
                known[i].pin_notified = v.state;
                snprintf(notices[n].serial, sizeof(notices[n].serial), "%s", known[i].token.serial);
                notices[n].state = v.state;
                notices[n].due_at = v.due_at;
                notices[n].reason = v.reason;
                n++;
        }
        pthread_rwlock_unlock(&registry_lock);

        for (size_t i = 0; i < n; i++) {
                const PinNotice *p = &notices[i];

                switch (p->state) {
                case PIN_STATE_EXPIRING:
                        log_notice("Token %s: %s.", p->serial, p->reason);
                        bus_pin_event(BUS_PIN_EXPIRING, p->serial, p->due_at);
                        break;
                case PIN_STATE_EXPIRED:
                        log_warning("Token %s: %s.", p->serial, p->reason);
                        bus_pin_event(BUS_PIN_EXPIRED, p->serial, p->due_at);
                        break;
                case PIN_STATE_LOCKED:
                        log_warning("Token %s: its user PIN is locked; it must go back to its issuer for recovery.",
                                    p->serial);
                        bus_pin_event(BUS_PIN_LOCKED, p->serial, p->due_at);
                        break;
                default:
                        break;
                }
                bus_token_changed(p->serial);
        }
}

void custody_certificates(CK_SLOT_ID slot, const StoreCertificate *certs, size_t n)
{
        char serial[33];
        int r;

        custody_slot_serial(slot, serial);
        if (!serial[0])
                return;
        store = state_acquire();
        r = store ? store_certificates_set(store, serial, certs, n) : -EBADF;
        state_release();
        if (r < 0)
                log_warning_errno(r, "Failed to record the certificates of token %s: %m", serial);
        else
                bus_token_changed(serial);
}
