/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's status document (DAEMON_STATUS, kysoctl status). */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker-internal.h"
#include "config.h"
#include "macro.h"
#include "server.h"

static json_object *json_padded(const unsigned char *s, size_t n)
{
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0'))
                n--;
        return json_object_new_string_len((const char *) s, (int) n);
}

static json_object *json_flags(CK_FLAGS flags, const CK_FLAGS *bits, const char *const *names, size_t n)
{
        json_object *a = json_object_new_array();

        for (size_t i = 0; i < n; i++)
                if (flags & bits[i])
                        json_object_array_add(a, json_object_new_string(names[i]));
        return a;
}

static json_object *slot_json(Slot *slot)
{
        static const CK_FLAGS slot_bits[] = { CKF_TOKEN_PRESENT, CKF_REMOVABLE_DEVICE, CKF_HW_SLOT };
        static const char *const slot_names[] = { "token-present", "removable-device", "hardware-slot" };
        static const CK_FLAGS token_bits[] = {
                CKF_RNG, CKF_WRITE_PROTECTED, CKF_LOGIN_REQUIRED, CKF_USER_PIN_INITIALIZED,
                CKF_PROTECTED_AUTHENTICATION_PATH, CKF_TOKEN_INITIALIZED, CKF_USER_PIN_COUNT_LOW,
                CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED, CKF_USER_PIN_TO_BE_CHANGED, CKF_SO_PIN_LOCKED,
        };
        static const char *const token_names[] = {
                "rng", "write-protected", "login-required", "user-pin-initialized",
                "protected-authentication-path", "token-initialized", "user-pin-count-low",
                "user-pin-final-try", "user-pin-locked", "user-pin-to-be-changed", "so-pin-locked",
        };
        json_object *o = json_object_new_object(), *t = NULL;
        CK_TOKEN_INFO ti;

        json_object_object_add(o, "id", json_object_new_int64((int64_t) slot->id));
        json_object_object_add(o, "backend", json_object_new_int((int) slot->backend->index));
        json_object_object_add(o, "description", json_padded(slot->info.slotDescription, 64));
        json_object_object_add(o, "manufacturer", json_padded(slot->info.manufacturerID, 32));
        json_object_object_add(o, "flags", json_flags(slot->info.flags, slot_bits, slot_names, ELEMENTSOF(slot_bits)));
        json_object_object_add(o, "serialized", json_object_new_boolean(slot->serialize));

        if (slot->token_present) {
                slot_call_begin(slot);
                if (backend_get_token_info(slot, &ti) == CKR_OK) {
                        t = json_object_new_object();
                        json_object_object_add(t, "label", json_padded(ti.label, 32));
                        json_object_object_add(t, "manufacturer", json_padded(ti.manufacturerID, 32));
                        json_object_object_add(t, "model", json_padded(ti.model, 16));
                        json_object_object_add(t, "serial", json_padded(ti.serialNumber, 16));
                        json_object_object_add(t, "flags",
                                               json_flags(ti.flags, token_bits, token_names, ELEMENTSOF(token_bits)));
                        json_object_object_add(t, "clients_logged_in", json_object_new_int((int) slot->login_count));
                }
                slot_call_end(slot);
        }
        json_object_object_add(o, "token", t);
        return o;
}

CK_RV broker_status(BrokerClient *bc, WireArg *args)
{
        _cleanup_(freep) Slot **all = NULL;
        json_object *root, *backends, *slots, *cl, *caller;
        unsigned total_sessions = 0, n_clients = 0;
        const char *text;
        size_t n = 0, len;
        CK_RV rv = CKR_OK;

        if (slots_snapshot(&all, &n) < 0)
                return CKR_HOST_MEMORY;

        root = json_object_new_object();
        json_object_object_add(root, "version", json_object_new_string(PACKAGE_VERSION));
        json_object_object_add(root, "pid", json_object_new_int((int) getpid()));
        json_object_object_add(root, "uptime_seconds", json_object_new_int64((int64_t) (time(NULL) - started_at)));
        json_object_object_add(root, "socket", json_object_new_string(broker_config.socket_path ?: ""));
        json_object_object_add(root, "state_dir", json_object_new_string(broker_config.state_dir ?: ""));

        backends = json_object_new_array();
        for (unsigned i = 0; i < backends_count(); i++) {
                Backend *b = backend_get(i);
                json_object *o = json_object_new_object();
                unsigned n_backend_slots = 0;
                char v[32];

                for (size_t j = 0; j < n; j++)
                        n_backend_slots += all[j]->backend == b && all[j]->listed;
                json_object_object_add(o, "index", json_object_new_int((int) i));
                json_object_object_add(o, "path", json_object_new_string(b->path));
                json_object_object_add(o, "manufacturer", json_padded(b->info.manufacturerID, 32));
                json_object_object_add(o, "description", json_padded(b->info.libraryDescription, 32));
                snprintf(v, sizeof(v), "%u.%u", b->info.libraryVersion.major, b->info.libraryVersion.minor);
                json_object_object_add(o, "library_version", json_object_new_string(v));
                snprintf(v, sizeof(v), "%u.%u", b->info.cryptokiVersion.major, b->info.cryptokiVersion.minor);
                json_object_object_add(o, "cryptoki_version", json_object_new_string(v));
                json_object_object_add(o, "interface_3_0", json_object_new_boolean(b->f3 != NULL));
                json_object_object_add(o, "slots", json_object_new_int((int) n_backend_slots));
                json_object_array_add(backends, o);
        }
        json_object_object_add(root, "backends", backends);

        slots = json_object_new_array();
        for (size_t i = 0; i < n; i++)
                if (all[i]->listed)
                        json_object_array_add(slots, slot_json(all[i]));
        json_object_object_add(root, "slots", slots);

        pthread_mutex_lock(&clients_lock);
        for (BrokerClient *c = clients; c; c = c->next) {
                pthread_mutex_lock(&c->lock);
                total_sessions += handle_map_size(c->sessions);
                pthread_mutex_unlock(&c->lock);
                n_clients++;
        }
        pthread_mutex_unlock(&clients_lock);
        cl = json_object_new_object();
        json_object_object_add(cl, "connected", json_object_new_int((int) n_clients));
        json_object_object_add(cl, "sessions", json_object_new_int((int) total_sessions));
        json_object_object_add(root, "clients", cl);

        caller = json_object_new_object();
        json_object_object_add(caller, "uid", json_object_new_int64(client_uid(bc->conn)));
        json_object_object_add(caller, "pid", json_object_new_int64(client_pid(bc->conn)));
        pthread_mutex_lock(&bc->lock);
        json_object_object_add(caller, "sessions", json_object_new_int((int) handle_map_size(bc->sessions)));
        json_object_object_add(caller, "objects", json_object_new_int((int) handle_map_size(bc->objects)));
        pthread_mutex_unlock(&bc->lock);
        json_object_object_add(root, "caller", caller);

        text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
        len = strlen(text);
        if (args[0].ptr) {
                if (len > args[0].len)
                        rv = CKR_BUFFER_TOO_SMALL;
                else
                        memcpy(args[0].ptr, text, len);
        }
        args[0].len = len;
        json_object_put(root);
        return rv;
}
