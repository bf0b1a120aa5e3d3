/* hmetrics.h -- magpie-http's metric families (GET /metrics), registered once by http_metrics_init(). */
#ifndef MAGPIE_HTTP_HMETRICS_H
#define MAGPIE_HTTP_HMETRICS_H

#include "metrics.h"

struct http_metrics {
    struct metric *requests;           /* counter {endpoint, status, frontend} */
    struct metric *latency;            /* histogram {endpoint} */
    struct metric *sms;                /* counter {outcome} */
    struct metric *qr;                 /* counter {event} */
    struct metric *long_polls;         /* gauge: waiting now */
    struct metric *long_polls_refused; /* counter */
    struct metric *revoked_tokens;     /* gauge: tokens in the copy of revoked tokens (revoked.h) */
    struct metric *revoked_ready;      /* gauge: 1 while that copy answers, 0 while requests ask Redis */
    struct metric *revoked_checks;     /* counter {source}: revocation checks answered by "copy" or "redis" */
};

extern struct http_metrics hm;

#endif
