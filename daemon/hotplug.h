/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * USB hotplug: libusb tells kysod the moment a token of a known model
 * (udev/tokens.list) is plugged in or pulled out. libusb's callbacks run in
 * its own event thread and may not call back into libusb, so they only queue
 * the event; the main loop then logs the device's identity (vendor, product,
 * serial, bus path), keeps the list of devices present for D-Bus, and asks for
 * an immediate rescan of the backends, whose slot events make the token come
 * or go. A device seen twice (coldplug and hotplug, or a repeated uevent) is
 * one device.
 *
 * Which token sits in which USB device PKCS#11 does not say: a token that
 * appears within a few seconds of a device's arrival, while no other token
 * claimed it, is taken to be that device's (the token's UsbDevice property).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct UsbDevice {
        uint16_t vendor;
        uint16_t product;
        char name[96];     /* "Feitian ePass2003", from the list */
        char serial[128];  /* iSerialNumber, "" when the device has none or cannot be opened */
        char path[32];     /* bus and ports, "1-1.2" */
} UsbDevice;

/* Starts watching (0 also when libusb cannot hotplug here: that is logged, slot events still work). */
int hotplug_start(sd_event *event, void (*rescan)(void));
void hotplug_stop(void);

/* The devices present now; *ret is malloc()ed. */
int hotplug_devices(UsbDevice **ret, size_t *ret_n);
/* The device that arrived last within the claim window and no token claimed yet: claims it. */
bool hotplug_claim_recent(UsbDevice *ret);
/* Room for any usb_device_describe(). */
#define USB_DEVICE_DESCRIPTION_MAX 320
/* "096e:0807 Feitian ePass2003, serial X, at 1-1.2" */
void usb_device_describe(const UsbDevice *d, char *buf, size_t size);
