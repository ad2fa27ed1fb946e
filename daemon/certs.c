/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certs.h"
#include "macro.h"

/* RFC 2253 text of a name, with UTF-8 kept as it is (Vietnamese names) rather than escaped. */
static char *name_text(const X509_NAME *name)
{
        BIO *b = BIO_new(BIO_s_mem());
        char *text = NULL, *data;
        long n;

        if (!b)
                return NULL;
        if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
                n = BIO_get_mem_data(b, &data);
                text = n >= 0 ? strndup(data, (size_t) n) : NULL;
        }
        BIO_free(b);
        return text;
}

static int64_t asn1_time(const ASN1_TIME *t)
{
        struct tm tm = {};

        if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
                return 0;
        return (int64_t) timegm(&tm);
}

int cert_describe(const uint8_t *der, size_t len, StoreCertificate *ret)
{
        const unsigned char *p = der;
        X509 *x;

        if (!der || len == 0 || len > LONG_MAX)
                return -EINVAL;
        x = d2i_X509(NULL, &p, (long) len);
        if (!x)
                return -EINVAL;
        ret->subject = name_text(X509_get_subject_name(x));
        ret->issuer = name_text(X509_get_issuer_name(x));
        ret->not_before = asn1_time(X509_get0_notBefore(x));
        ret->not_after = asn1_time(X509_get0_notAfter(x));
        X509_free(x);
        if (!ret->subject || !ret->issuer) {
                free(ret->subject);
                free(ret->issuer);
                ret->subject = ret->issuer = NULL;
                return -ENOMEM;
        }
        return 0;
}
