/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * "kysoctl audit", "kysoctl audit verify" and "kysoctl report": kysod's
 * audit log and the subscriber report, over the system D-Bus (org.kyso1
 * Manager.GetAudit, VerifyAudit, GetReport; see data/org.kyso1.xml).
 */
#pragma once

#include <getopt.h>

#include "kysoctl.h"

extern const struct option audit_options[];
extern const struct option report_options[];
#define REPORT_SHORTOPTS "o:"

int run_audit(const Options *opts, int argc, char **argv);
int run_audit_verify(const Options *opts, int argc, char **argv);
int run_report(const Options *opts, int argc, char **argv);
