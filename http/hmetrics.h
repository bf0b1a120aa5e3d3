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
};

extern struct http_metrics hm;

#endif
