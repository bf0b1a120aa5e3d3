/* notify_post.c -- see notify_post.h. */
#include "notify_post.h"
#include "magpie.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int notify_sign(const char *secret, const char *body, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, mac, &n) == NULL ||
        n != 32)
        return MP_ERR;
    memcpy(out, "sha256=", 7);
    for (unsigned int i = 0; i < n; i++) {
        out[7 + 2 * i] = hex[mac[i] >> 4];
        out[7 + 2 * i + 1] = hex[mac[i] & 15];
    }
    out[7 + 2 * n] = '\0';
    return MP_OK;
}

/* libcurl's write callback: count, keep the first bytes for the log, and end the transfer past the cap
 * (returning less than given makes libcurl stop with CURLE_WRITE_ERROR). */
static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct notify_post *p = arg;
    size_t n = size * nmemb, keep = NOTIFY_POST_SNIPPET - p->snippet_len;

    if (keep > n)
        keep = n;
    memcpy(p->snippet + p->snippet_len, data, keep);
    p->snippet_len += keep;
    p->snippet[p->snippet_len] = '\0';
    if (p->received + n > p->cap) {
        p->received = p->cap;
        p->cut = 1;
        return 0;
    }
    p->received += n;
    return n;
}

struct notify_post *notify_post_new(const struct magpie_config *cfg, char *body, size_t len, void *owner)
{
    struct notify_post *p = calloc(1, sizeof(*p));
    char sig[NOTIFY_SIG_MAX], header[NOTIFY_SIG_MAX + 64];
    struct curl_slist *h;
    CURLcode rc = CURLE_OK;

    if (p == NULL) {
        free(body);
        return NULL;
    }
    p->body = body;
    p->body_len = len;
    p->cap = (size_t)cfg->notify.max_response_bytes;
    p->owner = owner;
    p->started_ms = mp_mono_ms();
    if (notify_sign(cfg->notify.secret, body, len, sig) != MP_OK || (p->easy = curl_easy_init()) == NULL)
        goto failed;
    snprintf(header, sizeof(header), NOTIFY_SIG_HEADER ": %s", sig);
    /* "Expect:" off: no 100-continue round trip (and no wait for it) before a body over 1 KiB. */
    const char *lines[] = {"Content-Type: application/json", "Expect:", header};
    for (size_t i = 0; i < MP_ARRAY_LEN(lines); i++) {
        if ((h = curl_slist_append(p->headers, lines[i])) == NULL)
            goto failed;
        p->headers = h;
    }
#define SET(opt, v)                                                                                          \
    if (rc == CURLE_OK)                                                                                      \
    rc = curl_easy_setopt(p->easy, opt, v)
    SET(CURLOPT_URL, cfg->notify.webhook_url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    if (cfg->notify.ca_file[0] != '\0') {
        SET(CURLOPT_CAINFO, cfg->notify.ca_file);
    }
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, p->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    SET(CURLOPT_HTTPHEADER, p->headers);
    SET(CURLOPT_USERAGENT, "magpie-notify/" PACKAGE_VERSION);
    SET(CURLOPT_TIMEOUT_MS, (long)cfg->notify.timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->notify.timeout_ms);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, p);
    SET(CURLOPT_ERRORBUFFER, p->err);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PRIVATE, p);
#undef SET
    if (rc == CURLE_OK)
        return p;
failed:
    notify_post_free(p);
    return NULL;
}

/* Copy s into out for a log line: at most len - 1 bytes, control characters and quotes as '?'. */
static void printable(char *out, size_t len, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n && i + 1 < len; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == '"' || s[i] == 0x7f ? '?' : s[i];
    out[i] = '\0';
}

int notify_post_result(struct notify_post *p, CURLcode rc, char *why, size_t len)
{
    long status = 0;
    char quoted[NOTIFY_POST_SNIPPET + 1];

    curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && p->cut && status > 0)) {
        if (status >= 200 && status < 300)
            return 1;
        printable(quoted, sizeof(quoted), p->snippet, p->snippet_len);
        snprintf(why, len, "http %ld%s: %s", status, p->cut ? " (answer over notify.max_response_bytes)" : "",
                 quoted);
        return 0;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT)
        snprintf(why, len, "timeout: %lld ms, http %ld so far", (long long)(mp_mono_ms() - p->started_ms),
                 status);
    else
        snprintf(why, len, "%s: %s", curl_easy_strerror(rc), p->err[0] ? p->err : "-");
    return 0;
}

void notify_post_free(struct notify_post *p)
{
    if (p == NULL)
        return;
    if (p->easy != NULL)
        curl_easy_cleanup(p->easy);
    curl_slist_free_all(p->headers);
    free(p->body);
    free(p);
}
