/* ref_mime: a plain, non-streaming transcription of what upstream filtermail
 * computes with mailparse 0.16 (parse_mail_recursive, parse_headers,
 * parse_content_type with RFC 2231, get_body) and its check_encrypted() and
 * is_securejoin(), for differential tests and fuzzing against the streaming
 * mime.c. It applies the same documented limits as mime.c (struct
 * mime_limits, boundaries with CR/LF ignored, QP whitespace runs capped) so
 * that the two must agree exactly. Header values are decoded with the shared
 * rfc2047.c. Allocates freely; not for production. Thread-safe. */
#ifndef FILTERMAIL_REF_MIME_H
#define FILTERMAIL_REF_MIME_H

#include <stdbool.h>
#include <stddef.h>

#include "mime.h"

struct ref_mime_result {
    const char *parse_error; /* static string or NULL */
    char *mimetype;          /* malloc'd */
    bool multipart;
    size_t nparts;
    size_t from_count;
    char *values[5]; /* From, Subject, Secure-Join, Auto-Submitted, Content-Type */
    size_t value_lens[5];
    bool value_trunc[5];
    bool encrypted, securejoin;
};

void ref_mime_check(const char *msg, size_t n, const struct mime_limits *lim, bool outgoing,
                    struct ref_mime_result *r);
void ref_mime_free(struct ref_mime_result *r);

#endif
