-- wrk script: POST /IM/token with a login token (MAGPIE_BENCH_TOKEN), the hot path of every chat client.
-- Prints one RESULT line; non200 counts answers >= 400, so a run full of errors cannot pass for a fast one.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("MAGPIE_BENCH_TOKEN")
wrk.headers["Content-Length"] = "0"

function done(summary, latency, requests)
    io.write(string.format("RESULT requests=%d duration_s=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d non200=%d\n",
        summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status))
end
