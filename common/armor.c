/* armor: streaming ASCII-armor check, equivalent to upstream's
 * check_armored_payload() (spec 4.3) without holding the payload.
 *
 * The reference works on the whole text: strip the BEGIN line, strip trailing
 * CRLF pairs, require and strip the END line, handle a "Version: " line, cut
 * at the last '=', drop CR and LF, decode base64, walk the packets. Streaming:
 *
 *  1. the 29-byte BEGIN line is matched exactly;
 *  2. the content keeps a window of its last 25 bytes plus a count of CRLF
 *     pairs after them and a pending CR; a byte pushed out of the window is
 *     certainly payload (it lies before any END line candidate); at the end
 *     the window must be the END line;
 *  3. the payload's first 9 bytes are looked at for "Version: " (outgoing:
 *     fail; incoming: drop through the first CRLF);
 *  4. with CR and LF ignored, payload bytes go through an '=' splitter: an '='
 *     may be the last one, so it is held back; bytes after it are dropped
 *     unless another '=' follows, and an '=' followed by data and then by
 *     another '=' can never be valid base64, so that fails at once;
 *  5. a strict base64 decoder feeds the packet checker.
 *
 * Stripping leading CRLF pairs (upstream step 5) changes nothing once CR and
 * LF are ignored. tests/support/ref_armor.c is the literal version; the unit
 * tests and fuzz_armor compare the two. */
#include "armor.h"

#include <string.h>

static const char begin_line[] = "-----BEGIN PGP MESSAGE-----\r\n"; /* 29 bytes */
static const char end_line[] = "-----END PGP MESSAGE-----";         /* 25 bytes */
#define BEGIN_LEN (sizeof(begin_line) - 1)
#define END_LEN (sizeof(end_line) - 1)

enum { A_BEGIN, A_CONTENT };
enum { P_LOOK, P_VERLINE, P_MAIN };

void armor_init(struct armor_checker *a, enum armor_direction dir)
{
    memset(a, 0, sizeof(*a));
    a->dir = dir;
    a->state = A_BEGIN;
    a->pstate = P_LOOK;
    base64_init(&a->b64, BASE64_ARMOR);
    pgp_packet_init(&a->packets);
}

/* Committed payload text (CR and LF are skipped by the decoder). */
static void decode(struct armor_checker *a, const char *p, size_t n)
{
    unsigned char out[BASE64_OUT_MAX(16384)];

    while (n > 0 && !a->failed) {
        size_t take = n < 16384 ? n : 16384;
        size_t got = base64_decode(&a->b64, p, take, out);
        if (base64_failed(&a->b64)) {
            a->failed = true;
            return;
        }
        pgp_packet_push(&a->packets, out, got);
        if (pgp_packet_failed(&a->packets))
            a->failed = true;
        p += take;
        n -= take;
    }
}

static bool has_data(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\r' && p[i] != '\n')
            return true;
    return false;
}

/* Step 4: the '=' splitter. */
static void split(struct armor_checker *a, const char *p, size_t n)
{
    while (n > 0 && !a->failed) {
        const char *eq = memchr(p, '=', n);
        size_t before = eq ? (size_t)(eq - p) : n;

        if (!a->in_tail) {
            decode(a, p, before);
            if (eq == NULL)
                return;
            a->in_tail = true;
            a->tail_has_data = false;
        } else {
            if (!a->tail_has_data && has_data(p, before))
                a->tail_has_data = true;
            if (eq == NULL)
                return;
            if (a->tail_has_data) { /* '=' then data, committed: never valid */
                a->failed = true;
                return;
            }
            decode(a, "=", 1); /* the held '=' was not the last one */
        }
        p += before + 1;
        n -= before + 1;
    }
}

/* Payload bytes, in order (step 3, then step 4). */
static void payload(struct armor_checker *a, const char *p, size_t n)
{
    static const char version[] = "Version: ";

    while (n > 0 && !a->failed) {
        switch (a->pstate) {
        case P_LOOK:
            while (n > 0 && a->lookn < 9) {
                if ((char)*p != version[a->lookn]) {
                    a->pstate = P_MAIN;
                    split(a, (const char *)a->look, a->lookn);
                    break;
                }
                a->look[a->lookn++] = (unsigned char)*p++;
                n--;
            }
            if (a->pstate == P_LOOK && a->lookn == 9) {
                if (a->dir == ARMOR_OUTGOING) {
                    a->failed = true;
                    return;
                }
                a->pstate = P_VERLINE;
                a->ver_cr = false;
            }
            break;
        case P_VERLINE: {
            const char *lf = memchr(p, '\n', n);
            if (lf == NULL) {
                a->ver_cr = p[n - 1] == '\r';
                return;
            }
            bool crlf = lf > p ? lf[-1] == '\r' : a->ver_cr;
            a->ver_cr = false;
            n -= (size_t)(lf + 1 - p);
            p = lf + 1;
            if (crlf)
                a->pstate = P_MAIN;
            break;
        }
        default:
            split(a, p, n);
            return;
        }
    }
}

/* count CRLF pairs that turned out to be payload. */
static void payload_crlf(struct armor_checker *a, uint64_t count)
{
    while (count > 0 && a->pstate != P_MAIN && !a->failed) {
        payload(a, "\r\n", 2);
        count--;
    }
    /* In the base64 text CR and LF are ignored: nothing more to do. */
}

static void window_push(struct armor_checker *a, unsigned char b)
{
    if (a->wlen == END_LEN) {
        payload(a, (const char *)a->window, 1);
        memmove(a->window, a->window + 1, END_LEN - 1);
        a->wlen--;
    }
    a->window[a->wlen++] = b;
}

static void flush_pairs(struct armor_checker *a)
{
    uint64_t k = a->crlf_pairs;

    a->crlf_pairs = 0;
    if (k > END_LEN) { /* the window is replaced entirely */
        payload(a, (const char *)a->window, a->wlen);
        a->wlen = 0;
        payload_crlf(a, k - END_LEN / 2 - 1);
        k = END_LEN / 2 + 1;
    }
    while (k-- > 0) {
        window_push(a, '\r');
        window_push(a, '\n');
    }
}

static void content_byte(struct armor_checker *a, unsigned char b)
{
    if (a->pending_cr) {
        a->pending_cr = false;
        if (b == '\n') {
            a->crlf_pairs++;
            return;
        }
        flush_pairs(a);
        window_push(a, '\r');
    }
    if (b == '\r') {
        a->pending_cr = true;
        return;
    }
    flush_pairs(a);
    window_push(a, b);
}

/* Step 2: content after the BEGIN line. */
static void content(struct armor_checker *a, const char *p, size_t n)
{
    size_t t = n, pairs = 0;
    bool pend = false;

    while (a->pending_cr && n > 0) { /* the junction, byte by byte */
        content_byte(a, (unsigned char)*p++);
        n--;
        t = n;
    }
    if (n >= 64) {
        if (p[t - 1] == '\r') {
            pend = true;
            t--;
        }
        while (t >= 2 && p[t - 2] == '\r' && p[t - 1] == '\n') {
            pairs++;
            t -= 2;
        }
    }
    if (n < 64 || t < END_LEN) {
        for (size_t i = 0; i < n && !a->failed; i++)
            content_byte(a, (unsigned char)p[i]);
        return;
    }
    /* Everything before the last 25 bytes ahead of the trailing pairs is
     * payload, after the old window and the old pairs. */
    payload(a, (const char *)a->window, a->wlen);
    payload_crlf(a, a->crlf_pairs);
    payload(a, p, t - END_LEN);
    memcpy(a->window, p + t - END_LEN, END_LEN);
    a->wlen = END_LEN;
    a->crlf_pairs = pairs;
    a->pending_cr = pend;
}

void armor_push(struct armor_checker *a, const char *p, size_t n)
{
    if (a->failed)
        return;
    if (a->state == A_BEGIN) {
        while (n > 0 && a->matched < BEGIN_LEN) {
            if (*p != begin_line[a->matched]) {
                a->failed = true;
                return;
            }
            a->matched++;
            p++;
            n--;
        }
        if (a->matched < BEGIN_LEN)
            return;
        a->state = A_CONTENT;
    }
    content(a, p, n);
}

bool armor_failed(const struct armor_checker *a)
{
    return a->failed;
}

bool armor_finish(struct armor_checker *a)
{
    if (a->failed || a->state != A_CONTENT || a->pending_cr)
        return false;
    /* Trailing CRLF pairs are stripped; what is left must end with END. */
    if (a->wlen != END_LEN || memcmp(a->window, end_line, END_LEN) != 0)
        return false;
    if (a->pstate == P_LOOK) { /* shorter than "Version: " */
        a->pstate = P_MAIN;
        split(a, (const char *)a->look, a->lookn);
    }
    if (a->pstate == P_VERLINE || a->failed)
        return false; /* "Version: " without a CRLF: kept, and cannot decode */
    /* The held '=' and whatever followed it are the CRC: dropped. */
    if (!base64_finish(&a->b64))
        return false;
    return pgp_packet_finish(&a->packets);
}

bool armor_check(const char *p, size_t n, enum armor_direction dir)
{
    struct armor_checker a;

    armor_init(&a, dir);
    armor_push(&a, p, n);
    return armor_finish(&a);
}
