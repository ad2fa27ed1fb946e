/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysod on D-Bus (org.kyso1, data/org.kyso1.xml): the Manager object with
 * the admin methods, one object per known token, and the signals desktop
 * applications listen to. sd-bus runs in the main thread's event loop; the
 * notifications below may come from any thread: they queue an event and
 * wake the loop, which emits it. When the bus is absent or goes away, kysod
 * keeps serving PKCS#11 and connects again every few seconds; events that
 * happen meanwhile are not replayed (properties carry the state).
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "hotplug.h"
#include "kysod-config.h"

/* Connects (or keeps trying to) and takes the name org.kyso1. 0, or -errno for a setup failure. */
int bus_start(sd_event *event, BusMode mode);
void bus_stop(void);

/* A token became known (seen for the first time, or named by a new record): its object appears. */
void bus_token_added(const char *serial);
void bus_token_inserted(const char *serial, const char *label);
void bus_token_removed(const char *serial);
/* Properties of the token may have changed (custody, label, presence). */
void bus_token_changed(const char *serial);
typedef enum BusPinEvent {
        BUS_PIN_EXPIRING,
        BUS_PIN_EXPIRED,
        BUS_PIN_LOCKED,
} BusPinEvent;

void bus_pin_event(BusPinEvent what, const char *serial, int64_t due_at);
/* A known token model was plugged in or pulled out (UsbDeviceAdded, UsbDeviceRemoved, UsbDevices). */
void bus_usb_event(bool added, const UsbDevice *d);
void bus_access_denied(const char *serial, uid_t uid, pid_t pid, const char *operation, const char *reason);
