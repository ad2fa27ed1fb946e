/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The subscriber report (REGULATION.md Art. 23.3): every token kysod knows,
 * its custody, PIN age, certificates, when it was seen and how many
 * signatures it made in a period, as the JSON document Manager.GetReport
 * returns (data/org.kyso1.xml). kysoctl turns it into CSV.
 */
#pragma once

#include <stdint.h>

/* since/until: the period for the signature counts (0: open). */
int report_json(int64_t since, int64_t until, char **ret);
