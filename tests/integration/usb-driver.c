/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Plugs and pulls a simulated Feitian ePass2003 (096e:0807) for
 * test-hotplug.sh, through umockdev's testbed: the processes started under it
 * (kysod among them) see the device in /sys and /dev and get its uevents,
 * which is what libusb's hotplug listens to.
 *
 *   umockdev-wrapper usb-driver CMD_FIFO ACK_FIFO -- COMMAND [ARGS...]
 *
 * Creates the testbed (UMOCKDEV_DIR), runs COMMAND in it, and carries out the
 * lines COMMAND writes to CMD_FIFO: "add N" plugs device number N (1-9, each
 * on its own port, serial "KYSO000N"), "readd N" sends its "add" uevent once
 * more (as a repeated announcement), "remove N" pulls it; each is answered
 * "ok" (or "error ...") on ACK_FIFO. Exits with COMMAND's status. It must run
 * under umockdev-wrapper itself, or the uevents reach nobody.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <umockdev.h>
#include <unistd.h>

/* Device, configuration, a CCID interface and two bulk endpoints, as an ePass2003 reports them. */
#define DESCRIPTORS                                                                                        \
        "12010002000000406e09070800010102030109022000010100803209040000020b0000000705010240000007058202400000"

static char *description(int n)
{
        char *s = NULL;

        if (asprintf(&s,
                     "P: /devices/pci0000:00/0000:00:14.0/usb1/1-%d\n"
                     "N: bus/usb/001/%03d\n"
                     "E: DEVNAME=/dev/bus/usb/001/%03d\n"
                     "E: DEVTYPE=usb_device\n"
                     "E: DRIVER=usb\n"
                     "E: PRODUCT=96e/807/100\n"
                     "E: TYPE=0/0/0\n"
                     "E: BUSNUM=001\n"
                     "E: DEVNUM=%03d\n"
                     "E: MAJOR=189\n"
                     "E: MINOR=%d\n"
                     "E: SUBSYSTEM=usb\n"
                     "A: idVendor=096e\n"
                     "A: idProduct=0807\n"
                     "A: bcdDevice=0100\n"
                     "A: busnum=1\n"
                     "A: devnum=%d\n"
                     "A: speed=12\n"
                     "A: bConfigurationValue=1\n"
                     "A: bNumConfigurations=1\n"
                     "A: bNumInterfaces= 1\n"
                     "A: manufacturer=FS\n"
                     "A: product=ePass2003\n"
                     "A: serial=KYSO000%d\n"
                     "H: descriptors=" DESCRIPTORS "\n",
                     n, n + 1, n + 1, n + 1, n, n + 1, n) < 0)
                return NULL;
        return s;
}

static void answer(int fd, const char *s)
{
        if (write(fd, s, strlen(s)) < 0 || write(fd, "\n", 1) < 0)
                fprintf(stderr, "usb-driver: cannot answer: %m\n");
}

/* The testbed's root directory (umockdev_testbed_get_root_dir() returns a new copy each time). */
static char *root;

static void command(UMockdevTestbed *tb, char *line, int ack)
{
        char syspath[128];
        GError *error = NULL;
        int n = 0;

        if (sscanf(line, "add %d", &n) == 1 && n >= 1 && n <= 9) {
                char *d = description(n);

                char path[512];

                /* umockdev aborts on adding a device that exists: say so instead. */
                snprintf(path, sizeof(path), "%s/sys/devices/pci0000:00/0000:00:14.0/usb1/1-%d",
                         root, n);
                if (access(path, F_OK) == 0) {
                        answer(ack, "error exists");
                        free(d);
                        return;
                }
                if (!d || !umockdev_testbed_add_from_string(tb, d, &error)) {
                        fprintf(stderr, "usb-driver: add %d: %s\n", n, error ? error->message : "out of memory");
                        answer(ack, "error add");
                } else
                        answer(ack, "ok");
                g_clear_error(&error);
                free(d);
        } else if (sscanf(line, "readd %d", &n) == 1 && n >= 1 && n <= 9) {
                /* The kernel announcing a device once more (a repeated "add" uevent). */
                snprintf(syspath, sizeof(syspath), "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-%d", n);
                umockdev_testbed_uevent(tb, syspath, "add");
                answer(ack, "ok");
        } else if (sscanf(line, "remove %d", &n) == 1 && n >= 1 && n <= 9) {
                snprintf(syspath, sizeof(syspath), "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-%d", n);
                char left[512];

                umockdev_testbed_uevent(tb, syspath, "remove");
                umockdev_testbed_remove_device(tb, syspath);
                snprintf(left, sizeof(left), "%s%s", root, syspath);
                if (access(left, F_OK) == 0) {
                        fprintf(stderr, "usb-driver: %s is still there after remove_device\n", left);
                        answer(ack, "error still there");
                } else
                        answer(ack, "ok");
        } else
                answer(ack, "error unknown command");
}

int main(int argc, char **argv)
{
        UMockdevTestbed *tb;
        char buf[256];
        size_t len = 0;
        int cmd, ack, status = 0;
        pid_t child;

        if (argc < 5 || strcmp(argv[3], "--") != 0) {
                fprintf(stderr, "usage: umockdev-wrapper usb-driver CMD_FIFO ACK_FIFO -- COMMAND [ARGS...]\n");
                return 2;
        }
        if (!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"), "umockdev-preload")) {
                fprintf(stderr, "usb-driver: not under umockdev-wrapper: the simulated device would reach nobody\n");
                return 2;
        }
        tb = umockdev_testbed_new();
        root = tb ? umockdev_testbed_get_root_dir(tb) : NULL;
        /* Read-write on our side, so that the fifo never reads end-of-file between the test's writes. */
        cmd = open(argv[1], O_RDWR | O_CLOEXEC | O_NONBLOCK);
        ack = open(argv[2], O_RDWR | O_CLOEXEC);
        if (!tb || cmd < 0 || ack < 0) {
                fprintf(stderr, "usb-driver: cannot set up: %m\n");
                return 1;
        }

        child = fork();
        if (child < 0)
                return 1;
        if (child == 0) {
                execvp(argv[4], argv + 4);
                fprintf(stderr, "usb-driver: cannot run %s: %m\n", argv[4]);
                _exit(127);
        }

        for (;;) {
                struct pollfd p = { .fd = cmd, .events = POLLIN };
                pid_t w = waitpid(child, &status, WNOHANG);

                if (w == child)
                        break;
                if (poll(&p, 1, 100) <= 0)
                        continue;
                for (;;) {
                        ssize_t k = read(cmd, buf + len, sizeof(buf) - 1 - len);
                        char *nl;

                        if (k <= 0)
                                break;
                        len += (size_t) k;
                        buf[len] = '\0';
                        while ((nl = strchr(buf, '\n'))) {
                                *nl = '\0';
                                command(tb, buf, ack);
                                memmove(buf, nl + 1, len - (size_t) (nl + 1 - buf) + 1);
                                len -= (size_t) (nl + 1 - buf);
                        }
                        if (len == sizeof(buf) - 1)
                                len = 0; /* a line too long to be a command */
                }
        }
        g_free(root);
        g_object_unref(tb);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
