-- One gateway route under wrk, the same script for both gateways. The request comes from the
-- environment: BENCH_METHOD (GET or POST), BENCH_BODY (a JSON body, optional), BENCH_TOKEN (a
-- bearer token, optional). done() prints one JSON line for the bench driver.

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY") or ""
if body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/json"
end
local token = os.getenv("BENCH_TOKEN") or ""
if token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
end

-- Each wrk thread has its own Lua state: done() collects the threads' counts through setup().
local threads = {}
function setup(thread)
    table.insert(threads, thread)
end

-- A good answer is 200 with the envelope's code 0. Both gateways answer a failed RPC with 200
-- and code 10001, which wrk alone (counting only statuses >= 400) would call a success.
failed = 0
function response(status, headers, body)
    if status ~= 200 or not string.find(body, '"code":0[,}]') then
        failed = failed + 1
    end
end

-- As kitexclient counts: requests and rps are good answers only; errors are the bad answers
-- plus socket errors and timeouts (which wrk leaves out of its request count).
function done(summary, latency, requests)
    local failed = 0
    for _, thread in ipairs(threads) do
        failed = failed + thread:get("failed")
    end
    local e = summary.errors
    local good = summary.requests - failed
    local seconds = summary.duration / 1e6
    io.write(string.format(
        '{"requests":%d,"errors":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f}\n',
        good, failed + e.connect + e.read + e.write + e.timeout, seconds, good / seconds,
        latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency:percentile(99.9) / 1e3))
end
