/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What kysod says of an X.509 certificate found on a token: its subject and
 * issuer (RFC 2253, UTF-8) and validity, for the Certificates property and the
 * subscriber report. The bytes come from the token and are untrusted: a
 * certificate OpenSSL cannot parse is described as such, never trusted.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Fills ret (strings malloc()ed; serial and key_id/label are the caller's to set). -EINVAL if not X.509. */
int cert_describe(const uint8_t *der, size_t len, StoreCertificate *ret);
