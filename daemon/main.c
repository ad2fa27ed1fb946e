/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kysod: the kyso daemon. Owns every PKCS#11 token on the machine through
 * the real modules (backends) and serves applications, which reach it
 * through kyso-pkcs11.so over a unix socket. See kysod(8).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "backend.h"
#include "broker.h"
#include "bus.h"
#include "clock.h"
#include "config.h"
#include "custody.h"
#include "hotplug.h"
#include "kysod-config.h"
#include "log.h"
#include "macro.h"
#include "server.h"
#include "state.h"

typedef struct Options {
        const char *config_path;
        bool config_required;
        const char *socket_path;
        const char *state_dir;
        char **backends;
        size_t n_backends;
        const char *log_level;
        const char *bus;
        const char *test_clock;
} Options;

static void help(void)
{
        printf("Usage: kysod [OPTIONS]\n"
               "\n"
               "The kyso token daemon: brokers PKCS#11 tokens for every application on this machine.\n"
               "\n"
               "  -c, --config FILE      Configuration file (default: " KYSO_CONFIG_DEFAULT ")\n"
               "  -s, --socket PATH      Socket clients connect to (default: " KYSO_SOCKET_DEFAULT ")\n"
               "  -d, --state-dir DIR    State directory (default: " KYSO_STATE_DIR_DEFAULT ")\n"
               "  -b, --backend MODULE   PKCS#11 module to load; repeat for several (default: the\n"
               "                         modules registered with p11-kit, except kyso itself)\n"
               "  -l, --log-level LEVEL  debug, info, notice, warning or error (default: info)\n"
               "      --bus BUS          D-Bus to publish org.kyso1 on: system, session or none\n"
               "                         (default: system)\n"
               "      --test-clock FILE  Tests only: take the time from FILE (Unix seconds)\n"
               "  -h, --help             Show this help\n"
               "      --version          Show the version\n"
               "\n"
               "Options override the configuration file. See kysod(8) and kysod.conf(5).\n");
}

static int parse_argv(int argc, char *argv[], Options *o)
{
        enum { ARG_VERSION = 0x100, ARG_BUS, ARG_TEST_CLOCK };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "socket", required_argument, NULL, 's' },
                { "state-dir", required_argument, NULL, 'd' },
                { "backend", required_argument, NULL, 'b' },
                { "log-level", required_argument, NULL, 'l' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "bus", required_argument, NULL, ARG_BUS },
                { "test-clock", required_argument, NULL, ARG_TEST_CLOCK },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:s:d:b:l:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        o->config_path = optarg;
                        o->config_required = true;
                        break;
                case 's':
                        o->socket_path = optarg;
                        break;
                case 'd':
                        o->state_dir = optarg;
                        break;
                case 'b': {
                        char **n = realloc(o->backends, (o->n_backends + 1) * sizeof(char *));

                        if (!n)
                                return log_oom();
                        o->backends = n;
                        o->backends[o->n_backends++] = optarg;
                        break;
                }
                case 'l':
                        if (parse_log_level(optarg) < 0) {
                                fprintf(stderr, "kysod: unknown log level \"%s\" (use debug, info, notice, warning or error)\n",
                                        optarg);
                                return -EINVAL;
                        }
                        o->log_level = optarg;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("kysod %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_BUS:
                        if (bus_mode_from_string(optarg) < 0) {
                                fprintf(stderr, "kysod: unknown bus \"%s\" (use system, session or none)\n", optarg);
                                return -EINVAL;
                        }
                        o->bus = optarg;
                        break;
                case ARG_TEST_CLOCK:
                        o->test_clock = optarg;
                        break;
                default:
                        fprintf(stderr, "Try 'kysod --help'.\n");
                        return -EINVAL;
                }

        if (optind < argc) {
                fprintf(stderr, "kysod: unexpected argument \"%s\". Try 'kysod --help'.\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int mkdir_parents(const char *path, mode_t mode)
{
        _cleanup_(freep) char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = '\0';
                        if (mkdir(p, mode) < 0 && errno != EEXIST)
                                return -errno;
                        *s = '/';
                }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int socket_in_use(const struct sockaddr_un *sa)
{
        _cleanup_(closep) int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -errno;
        return connect(fd, (const struct sockaddr *) sa, sizeof(*sa)) == 0;
}

/* Binds the socket every local user may connect to: the broker's policy decides what each may do. */
static int open_socket(const char *path, bool *ret_created)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(closep) int fd = -1;
        _cleanup_(freep) char *dir = NULL;
        char *slash;
        int r;

        if (sd_listen_fds(1) >= 1) {
                int flags = fcntl(SD_LISTEN_FDS_START, F_GETFL);

                *ret_created = false;
                /* systemd passes it blocking; the workers share it on one epoll set and must not block. */
                if (flags < 0 || fcntl(SD_LISTEN_FDS_START, F_SETFL, flags | O_NONBLOCK) < 0)
                        return log_error_errno(errno, "Failed to make the passed socket non-blocking: %m");
                log_info("Using the socket passed by the service manager.");
                return SD_LISTEN_FDS_START;
        }

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "Socket path too long: %s", path);
        strcpy(sa.sun_path, path);

        dir = strdup(path);
        if (!dir)
                return log_oom();
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                r = mkdir_parents(dir, 0755);
                if (r < 0)
                        return log_error_errno(r, "Failed to create socket directory %s: %m", dir);
        }

        r = socket_in_use(&sa);
        if (r > 0)
                return log_error_errno(EADDRINUSE, "Another kysod is already serving %s.", path);
        (void) unlink(path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create socket: %m");
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return log_error_errno(errno, "Failed to bind %s: %m", path);
        if (chmod(path, 0666) < 0)
                return log_error_errno(errno, "Failed to make %s reachable for local users: %m", path);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Failed to listen on %s: %m", path);
        *ret_created = true;
        return TAKE_FD(fd);
}

/* Slot events for backends that cannot tell us: look every so often. */
/* After a USB token arrives or leaves, look often for a while: the backend (pcscd, OpenSC) needs a moment. */
#define POLL_FAST_MS 100U
#define POLL_FAST_FOR_USEC (5U * 1000000U)

static pthread_mutex_t poll_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t poll_cond = PTHREAD_COND_INITIALIZER;
static bool poll_stop;
static unsigned poll_interval_ms;
static uint64_t poll_fast_until; /* CLOCK_MONOTONIC usec */

/* Hotplug saw a token device come or go: rescan now, and often for a few seconds. */
static void poll_kick(void)
{
        pthread_mutex_lock(&poll_lock);
        poll_fast_until = monotonic_usec() + POLL_FAST_FOR_USEC;
        pthread_cond_broadcast(&poll_cond);
        pthread_mutex_unlock(&poll_lock);
}

static void *poll_main(void *userdata)
{
        pthread_mutex_lock(&poll_lock);
        while (!poll_stop) {
                bool fast = monotonic_usec() < poll_fast_until;
                struct timespec ts = realtime_after_usec((uint64_t) (fast ? POLL_FAST_MS : poll_interval_ms) * 1000U);

                (void) pthread_cond_timedwait(&poll_cond, &poll_lock, &ts);
                if (poll_stop)
                        break;
                pthread_mutex_unlock(&poll_lock);
                broker_rescan();
                pthread_mutex_lock(&poll_lock);
        }
        pthread_mutex_unlock(&poll_lock);
        return NULL;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        log_info("Received %s, shutting down.", strsignal((int) si->ssi_signo));
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

/*
 * SIGHUP: reads the configuration file again and applies what can change without dropping a session: the
 * log level, [policy] and [pin]. The socket, the state directory, the backends, the workers, the limits and
 * the token classes stay as they are until a restart (said in the log when they differ).
 */
static const char *reload_path;
static bool reload_required;

/* Keeps the audit table close behind the spool (audit.h); a failure is logged where it happens. */
static int on_audit_flush(sd_event_source *s, uint64_t usec, void *userdata)
{
        (void) audit_flush();
        (void) sd_event_source_set_time_relative(s, AUDIT_FLUSH_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int on_hup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        KysodConfig c;
        int r;

        log_notice("Received SIGHUP: reloading %s.", reload_path);
        (void) sd_notify(0, "RELOADING=1");
        kysod_config_init(&c);
        r = kysod_config_load(&c, reload_path, reload_required);
        if (r < 0) {
                log_error("The configuration in %s has errors (above): keeping the one in use.", reload_path);
                kysod_config_done(&c);
                (void) sd_notify(0, "READY=1");
                return 0;
        }
        log_setup("kysod", c.log_level);
        custody_reconfigure(&c);
        log_notice("Reloaded %s: log level, [policy] and [pin] apply now; sessions are kept. Changes to sockets, "
                   "backends, workers, limits or token classes need a restart.",
                   reload_path);
        kysod_config_done(&c);
        (void) sd_notify(0, "READY=1");
        return 0;
}

int main(int argc, char *argv[])
{
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        Options opts = { .config_path = KYSO_CONFIG_DEFAULT };
        KysodConfig config;
        ServerConfig server_config = {};
        char **registered = NULL;
        size_t n_registered = 0;
        bool socket_created = false;
        pthread_t poll_thread;
        bool poll_started = false, custody_started = false, state_started = false, hotplug_started = false;
        _cleanup_(freep) char *db_path = NULL;
        sigset_t mask;
        unsigned stuck;
        int r, fd = -1;

        log_setup("kysod", LOG_INFO);
        kysod_config_init(&config);

        /* Requests up to a frame (16 MiB) come and go all the time: keep that memory in the heap instead of
         * handing it back to the kernel after each one and faulting it in again for the next. */
        (void) mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        (void) mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);

        r = parse_argv(argc, argv, &opts);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        r = kysod_config_load(&config, opts.config_path, opts.config_required);
        if (r < 0)
                goto finish;
        if (opts.socket_path && kysod_config_set_string(&config.socket_path, opts.socket_path) < 0)
                goto oom;
        if (opts.state_dir && kysod_config_set_string(&config.state_dir, opts.state_dir) < 0)
                goto oom;
        if (opts.n_backends > 0) {
                kysod_config_clear_backends(&config);
                for (size_t i = 0; i < opts.n_backends; i++)
                        if (kysod_config_add_backend(&config, opts.backends[i]) < 0)
                                goto oom;
        }
        if (opts.log_level)
                config.log_level = parse_log_level(opts.log_level);
        if (opts.bus)
                config.bus = bus_mode_from_string(opts.bus);
        if (!config.socket_path && kysod_config_set_string(&config.socket_path, KYSO_SOCKET_DEFAULT) < 0)
                goto oom;
        if (!config.state_dir && kysod_config_set_string(&config.state_dir, KYSO_STATE_DIR_DEFAULT) < 0)
                goto oom;
        log_setup("kysod", config.log_level);

        /* Signals are handled by the event loop; every thread started later inherits the mask. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = mkdir_parents(config.state_dir, 0750);
        if (r < 0) {
                log_error_errno(r, "Failed to create state directory %s: %m", config.state_dir);
                goto finish;
        }

        if (asprintf(&db_path, "%s/kyso.db", config.state_dir) < 0) {
                db_path = NULL;
                goto oom;
        }
        if (opts.test_clock) {
                r = clock_use_file(opts.test_clock);
                if (r < 0)
                        goto finish;
        }
        /* Without its registry kysod cannot tell who may use a token: it does not serve without one. */
        r = state_open(db_path);
        if (r < 0)
                goto finish;
        state_started = true;
        r = custody_init(db_path, &config);
        if (r < 0)
                goto finish;
        custody_started = true;

        if (config.n_backends == 0) {
                r = backends_find_registered(&registered, &n_registered);
                if (r < 0)
                        goto finish;
                if (n_registered == 0)
                        log_warning("No PKCS#11 module is configured or registered with p11-kit: serving no tokens.");
        }
        r = backends_load(config.n_backends > 0 ? config.backends : registered,
                          config.n_backends > 0 ? config.n_backends : n_registered, config.serialize);
        if (r < 0)
                goto finish;

        BrokerConfig broker_config = {
                .socket_path = config.socket_path,
                .state_dir = config.state_dir,
                .classes = config.classes,
                .n_classes = config.n_classes,
                .sessions_per_uid = config.limits.sessions_per_uid,
        };
        broker_setup(&broker_config);
        broker_rescan();

        fd = open_socket(config.socket_path, &socket_created);
        if (fd < 0) {
                r = fd;
                goto finish;
        }

        server_config = (ServerConfig) {
                .listen_fd = fd,
                .workers = config.workers,
                .max_workers = config.max_workers,
                .spin_usec = config.spin_usec,
                .connections_per_uid = config.limits.connections_per_uid,
                .requests_per_client = config.limits.requests_per_client,
                .requests_per_uid = config.limits.requests_per_uid,
                .buffered_bytes_per_uid = config.limits.buffered_bytes_per_uid,
                .buffered_bytes_per_client = config.limits.buffered_bytes_per_client,
                .call_timeout_ms = config.call_timeout_ms,
        };
        r = server_start(&server_config);
        if (r < 0)
                goto finish;

        poll_interval_ms = config.poll_interval_ms;
        if (pthread_create(&poll_thread, NULL, poll_main, NULL) == 0)
                poll_started = true;
        /* Backends that can tell of slot events do, at once; the poll thread covers the others. */
        backends_watch(poll_kick);

        r = sd_event_default(&event);
        if (r < 0) {
                log_error_errno(r, "Failed to create event loop: %m");
                goto finish;
        }
        if (sd_event_add_signal(event, NULL, SIGTERM, on_exit_signal, NULL) < 0 ||
            sd_event_add_signal(event, NULL, SIGINT, on_exit_signal, NULL) < 0 ||
            sd_event_add_signal(event, NULL, SIGHUP, on_hup, NULL) < 0 ||
            sd_event_add_time_relative(event, NULL, CLOCK_MONOTONIC, AUDIT_FLUSH_USEC, 0, on_audit_flush, NULL) < 0) {
                r = log_error_errno(EIO, "Failed to set up signal handling and timers.");
                goto finish;
        }
        r = bus_start(event, config.bus);
        if (r < 0)
                goto finish;
        r = hotplug_start(event, poll_kick);
        if (r < 0)
                goto finish;
        hotplug_started = true;
        /* Under systemd with WatchdogSec=, the loop itself sends WATCHDOG=1: a stuck loop is restarted. */
        r = sd_event_set_watchdog(event, true);
        if (r < 0)
                log_warning_errno(r, "Failed to set up the service watchdog: %m");
        reload_path = opts.config_path;
        reload_required = opts.config_required;

        log_info("kysod %s ready on %s with %zu backend(s).", PACKAGE_VERSION, config.socket_path, backends_count());
        (void) sd_notifyf(0, "READY=1\nSTATUS=Serving %zu backend(s) on %s", backends_count(), config.socket_path);

        r = sd_event_loop(event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        (void) sd_notify(0, "STOPPING=1");

finish:
        stuck = server_stop(5U * 1000000U);
        if (poll_started) {
                pthread_mutex_lock(&poll_lock);
                poll_stop = true;
                pthread_cond_broadcast(&poll_cond);
                pthread_mutex_unlock(&poll_lock);
                pthread_join(poll_thread, NULL);
        }
        if (hotplug_started)
                hotplug_stop();
        bus_stop();
        if (socket_created)
                (void) unlink(config.socket_path);
        if (fd >= 0)
                close(fd);
        /* A worker still inside a backend call must not see the module unloaded under it. */
        if (stuck == 0)
                backends_unload();
        if (custody_started && stuck == 0)
                custody_done();
        if (state_started && stuck == 0)
                state_close();
        for (size_t i = 0; i < n_registered; i++)
                free(registered[i]);
        free(registered);
        free(opts.backends);
        kysod_config_done(&config);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

oom:
        log_oom();
        r = -ENOMEM;
        goto finish;
}
