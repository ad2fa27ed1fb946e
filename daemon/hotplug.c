/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <libusb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "evqueue.h"
#include "hotplug.h"
#include "kyso-usb-ids.h"
#include "log.h"
#include "macro.h"

/* A token that appears this long after a device's arrival may be that device's. */
#define CLAIM_WINDOW_USEC (15U * 1000000U)
/* More devices than this at once is not a workstation: the rest are ignored (and logged). */
#define DEVICES_MAX 64U
#define QUEUE_MAX 1024U

typedef struct UsbEvent {
        EvNode node; /* first: the queue's link */
        bool arrived;
        UsbDevice dev;
        uint8_t address;
        libusb_device *handle; /* arrivals: a reference, to read the serial outside the callback */
} UsbEvent;

typedef struct Present {
        UsbDevice dev;
        uint8_t address;
        uint64_t arrived_usec; /* CLOCK_MONOTONIC */
        bool claimed;
} Present;

static libusb_context *usb;
static libusb_hotplug_callback_handle callback;
static pthread_t usb_thread;
static bool usb_thread_started;
static int usb_stop; /* for libusb_handle_events_completed() */

static sd_event_source *queue_source;
static EvQueue queue = EVQUEUE_INIT;
static void (*rescan_now)(void);

/* devices_lock guards the devices present. */
static pthread_mutex_t devices_lock = PTHREAD_MUTEX_INITIALIZER;
static Present devices[DEVICES_MAX];
static size_t n_devices;

static const KysoUsbId *known_id(uint16_t vendor, uint16_t product)
{
        for (size_t i = 0; i < KYSO_USB_IDS_COUNT; i++)
                if (kyso_usb_ids[i].vendor == vendor && kyso_usb_ids[i].product == product)
                        return &kyso_usb_ids[i];
        return NULL;
}

void usb_device_describe(const UsbDevice *d, char *buf, size_t size)
{
        snprintf(buf, size, "%04x:%04x %s%s%s, at %s", d->vendor, d->product, d->name,
                 d->serial[0] ? ", serial " : "", d->serial, d->path);
}

/* Bus and ports as the kernel names the device: "1-1.2". */
static void device_path(libusb_device *dev, char *buf, size_t size)
{
        uint8_t ports[8];
        int n = libusb_get_port_numbers(dev, ports, (int) ELEMENTSOF(ports));
        size_t k;

        k = (size_t) snprintf(buf, size, "%u", libusb_get_bus_number(dev));
        for (int i = 0; i < n && k < size; i++)
                k += (size_t) snprintf(buf + k, size - k, "%s%u", i == 0 ? "-" : ".", ports[i]);
}

static void usb_event_free(UsbEvent *e)
{
        if (e->handle)
                libusb_unref_device(e->handle);
        free(e);
}

/* In libusb's event thread: note the event and wake the main loop, nothing else (libusb's rule). */
static int LIBUSB_CALL on_hotplug(libusb_context *ctx, libusb_device *dev, libusb_hotplug_event event,
                                  void *userdata)
{
        struct libusb_device_descriptor desc;
        const KysoUsbId *id;
        UsbEvent *e;

        if (libusb_get_device_descriptor(dev, &desc) < 0)
                return 0;
        id = known_id(desc.idVendor, desc.idProduct);
        if (!id)
                return 0;
        e = calloc(1, sizeof(UsbEvent));
        if (!e)
                return 0;
        e->arrived = event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED;
        e->dev.vendor = desc.idVendor;
        e->dev.product = desc.idProduct;
        snprintf(e->dev.name, sizeof(e->dev.name), "%s %s", id->vendor_name, id->product_name);
        device_path(dev, e->dev.path, sizeof(e->dev.path));
        e->address = libusb_get_device_address(dev);
        if (e->arrived)
                e->handle = libusb_ref_device(dev);

        if (!evqueue_push(&queue, &e->node))
                usb_event_free(e);
        return 0;
}

/*
 * The device's serial number, read outside the callback: from sysfs, which the kernel filled from the
 * descriptor at enumeration (no need to open the device, which the service user may not be allowed to),
 * else from the device itself. "" when neither answers.
 */
static void read_serial(libusb_device *dev, const char *path, char *buf, size_t size)
{
        struct libusb_device_descriptor desc;
        libusb_device_handle *h = NULL;
        char sysfs[96];
        FILE *f;
        int n;

        buf[0] = '\0';
        snprintf(sysfs, sizeof(sysfs), "/sys/bus/usb/devices/%s/serial", path);
        f = fopen(sysfs, "re");
        if (f) {
                if (!fgets(buf, (int) size, f))
                        buf[0] = '\0';
                fclose(f);
                buf[strcspn(buf, "\n")] = '\0';
        }
        if (!buf[0] && libusb_get_device_descriptor(dev, &desc) == 0 && desc.iSerialNumber != 0 &&
            libusb_open(dev, &h) == 0) {
                n = libusb_get_string_descriptor_ascii(h, desc.iSerialNumber, (unsigned char *) buf, (int) size);
                buf[n > 0 && (size_t) n < size ? n : 0] = '\0';
                libusb_close(h);
        }
        /* Printable only: it goes into logs and onto the bus. */
        for (char *p = buf; *p; p++)
                if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
                        *p = '?';
}

static ssize_t find_device_locked(const UsbDevice *d, uint8_t address)
{
        for (size_t i = 0; i < n_devices; i++)
                if (devices[i].address == address && streq(devices[i].dev.path, d->path))
                        return (ssize_t) i;
        return -1;
}

static void handle_event(UsbEvent *e)
{
        char what[USB_DEVICE_DESCRIPTION_MAX];
        bool changed = false;
        ssize_t i;

        if (e->arrived) {
                read_serial(e->handle, e->dev.path, e->dev.serial, sizeof(e->dev.serial));
                pthread_mutex_lock(&devices_lock);
                if (find_device_locked(&e->dev, e->address) < 0 && n_devices < DEVICES_MAX) {
                        devices[n_devices++] = (Present) {
                                .dev = e->dev,
                                .address = e->address,
                                .arrived_usec = monotonic_usec(),
                        };
                        changed = true;
                }
                pthread_mutex_unlock(&devices_lock);
        } else {
                pthread_mutex_lock(&devices_lock);
                i = find_device_locked(&e->dev, e->address);
                if (i >= 0) {
                        e->dev = devices[i].dev; /* with the serial read at arrival */
                        devices[i] = devices[--n_devices];
                        changed = true;
                }
                pthread_mutex_unlock(&devices_lock);
        }
        if (!changed)
                return; /* seen already (coldplug and hotplug both), or never seen */

        usb_device_describe(&e->dev, what, sizeof(what));
        log_info("USB token %s %s.", what, e->arrived ? "plugged in" : "pulled out");
        bus_usb_event(e->arrived, &e->dev);
        if (rescan_now)
                rescan_now();
}

/* Takes what is queued: handled (handle) or only freed. */
static void queue_drain(bool handle, bool close)
{
        EvNode *list = evqueue_take(&queue, close);

        while (list) {
                UsbEvent *e = (UsbEvent *) list;

                list = list->next;
                if (handle)
                        handle_event(e);
                usb_event_free(e);
        }
}

static int on_queue(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        queue_drain(true, false);
        return 0;
}

static void *usb_main(void *userdata)
{
        while (!__atomic_load_n(&usb_stop, __ATOMIC_ACQUIRE))
                (void) libusb_handle_events_completed(usb, &usb_stop);
        return NULL;
}

int hotplug_start(sd_event *event, void (*rescan)(void))
{
        int r;

        rescan_now = rescan;
        r = libusb_init(&usb);
        if (r < 0) {
                log_warning("USB hotplug is off: libusb cannot start (%s); tokens are still found by polling.",
                            libusb_error_name(r));
                usb = NULL;
                return 0;
        }
        if (!libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG)) {
                log_warning("USB hotplug is off: this libusb cannot hotplug; tokens are still found by polling.");
                libusb_exit(usb);
                usb = NULL;
                return 0;
        }

        r = evqueue_init(&queue, QUEUE_MAX);
        if (r < 0)
                return log_error_errno(r, "Failed to create the USB event queue: %m");
        r = sd_event_add_io(event, &queue_source, queue.fd, EPOLLIN, on_queue, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to watch USB events: %m");

        /* ENUMERATE: the devices plugged in before kysod started come as arrivals too. */
        r = libusb_hotplug_register_callback(usb,
                                             LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
                                             LIBUSB_HOTPLUG_ENUMERATE, LIBUSB_HOTPLUG_MATCH_ANY,
                                             LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY, on_hotplug, NULL,
                                             &callback);
        if (r < 0) {
                log_warning("USB hotplug is off: %s; tokens are still found by polling.", libusb_error_name(r));
                return 0;
        }
        r = pthread_create(&usb_thread, NULL, usb_main, NULL);
        if (r != 0)
                return log_error_errno(r, "Failed to start the USB event thread: %m");
        usb_thread_started = true;
        log_info("Watching USB for %u token model(s).", (unsigned) KYSO_USB_IDS_COUNT);
        return 0;
}

void hotplug_stop(void)
{
        if (usb) {
                __atomic_store_n(&usb_stop, 1, __ATOMIC_RELEASE);
                if (callback)
                        libusb_hotplug_deregister_callback(usb, callback);
                libusb_interrupt_event_handler(usb);
                if (usb_thread_started)
                        pthread_join(usb_thread, NULL);
                usb_thread_started = false;
        }
        queue_drain(false, true);
        if (usb)
                libusb_exit(usb);
        usb = NULL;
        queue_source = sd_event_source_disable_unref(queue_source);
        evqueue_done(&queue);
}

int hotplug_devices(UsbDevice **ret, size_t *ret_n)
{
        UsbDevice *a;
        size_t n;

        pthread_mutex_lock(&devices_lock);
        n = n_devices;
        a = calloc(n ? n : 1, sizeof(UsbDevice));
        for (size_t i = 0; a && i < n; i++)
                a[i] = devices[i].dev;
        pthread_mutex_unlock(&devices_lock);
        if (!a)
                return -ENOMEM;
        *ret = a;
        *ret_n = n;
        return 0;
}

bool hotplug_claim_recent(UsbDevice *ret)
{
        uint64_t now = monotonic_usec();
        ssize_t best = -1;

        pthread_mutex_lock(&devices_lock);
        for (size_t i = 0; i < n_devices; i++)
                if (!devices[i].claimed && now - devices[i].arrived_usec <= CLAIM_WINDOW_USEC &&
                    (best < 0 || devices[i].arrived_usec > devices[best].arrived_usec))
                        best = (ssize_t) i;
        if (best >= 0) {
                devices[best].claimed = true;
                *ret = devices[best].dev;
        }
        pthread_mutex_unlock(&devices_lock);
        return best >= 0;
}
