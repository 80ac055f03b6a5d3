-- The load of `cargo xtask bench`, for wrk (https://github.com/wg/wrk, Debian's `wrk`).
--
-- One wrk thread per api replica: setup() points each thread at its own replica's published
-- port, taken in turn from BENCH_TARGETS ("127.0.0.1:49153,127.0.0.1:49154,..."); the URL on
-- wrk's command line gives the path only. All threads share wrk's latency histogram, so one run
-- gives the percentiles over every replica together (those of separate runs cannot be merged).
-- BENCH_UPLOAD_BYTES > 0 turns each request into an upload of that many bytes.
-- done() prints one machine-readable line, read by `bench::load::parse`.

local targets = {}
for target in string.gmatch(os.getenv("BENCH_TARGETS") or "", "[^,]+") do
  table.insert(targets, target)
end
local next_target = 1

function setup(thread)
  local host, port = string.match(targets[next_target], "^(.+):(%d+)$")
  thread.addr = wrk.lookup(host, port)[1]
  next_target = next_target % #targets + 1
end

local upload_bytes = tonumber(os.getenv("BENCH_UPLOAD_BYTES") or "0")
if upload_bytes > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("bench-document ", math.ceil(upload_bytes / 15)):sub(1, upload_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d max_us=%d "
      .. "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d non_2xx=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
