/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small macros every part of kyso uses: cleanup attributes for ownership,
 * array sizes, overflow-checked arithmetic and memory wiping.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)
#define _public_ __attribute__((visibility("default")))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Take ownership of a pointer out of a cleanup-managed variable. */
#define TAKE_PTR(p)                                                                                        \
        ({                                                                                                 \
                __typeof__(p) _p_ = (p);                                                                   \
                (p) = NULL;                                                                                \
                _p_;                                                                                       \
        })

#define TAKE_FD(fd)                                                                                        \
        ({                                                                                                 \
                int _fd_ = (fd);                                                                           \
                (fd) = -1;                                                                                 \
                _fd_;                                                                                      \
        })

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                            \
        static inline void func##p(type *p)                                                                \
        {                                                                                                  \
                if (*p)                                                                                    \
                        func(*p);                                                                          \
        }

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}

static inline int negative_errno(void)
{
        return errno > 0 ? -errno : -EIO;
}

/* Wipe memory that held a secret; the compiler may not drop it. */
static inline void secure_zero(void *p, size_t n)
{
        if (p && n > 0)
                explicit_bzero(p, n);
}

static inline bool size_mul_overflow(size_t a, size_t b, size_t *ret)
{
        return __builtin_mul_overflow(a, b, ret);
}

static inline bool size_add_overflow(size_t a, size_t b, size_t *ret)
{
        return __builtin_add_overflow(a, b, ret);
}

#define streq(a, b) (strcmp((a), (b)) == 0)

/* Microseconds on CLOCK_MONOTONIC: for deadlines and ages, never for dates. */
static inline uint64_t monotonic_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

/* The CLOCK_REALTIME instant usec from now, as pthread_cond_timedwait() and pthread_timedjoin_np() want it. */
static inline struct timespec realtime_after_usec(uint64_t usec)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t) (usec / 1000000U);
        ts.tv_nsec += (long) (usec % 1000000U) * 1000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}
