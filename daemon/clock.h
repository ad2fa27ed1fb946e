/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The clock every policy decision of kysod reads (custody windows, PIN age,
 * audit times). It is the system's real time, unless kysod was started with
 * --test-clock FILE: then "now" is the Unix time written in FILE, read again
 * whenever the file changes, so that tests can move time by months without
 * sleeping. Nothing but that command-line option sets it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Reads time from path from now on (NULL: the real clock). -errno if path cannot be read as a time. */
int clock_use_file(const char *path);
bool clock_is_test(void);
int64_t clock_now(void);
