-- wrk script for benchmarks/bench_serving.py: POST JSON bodies read from a file, one body per line,
-- cycled per connection, so every target sees the same rows in the same order. At the end it prints
-- one machine-readable line (latency percentiles in microseconds, counts) that the benchmark parses:
-- wrk's own --latency table has no p95.
--
-- Environment: SBENCH_BODIES (file of bodies, one per line), SBENCH_PATH (request path).

local bodies = {}
local path = os.getenv("SBENCH_PATH") or "/"
local index = 0

local file = assert(io.open(os.getenv("SBENCH_BODIES"), "r"))
for line in file:lines() do
  if #line > 0 then
    bodies[#bodies + 1] = line
  end
end
file:close()
assert(#bodies > 0, "SBENCH_BODIES has no bodies")

local headers = { ["Content-Type"] = "application/json" }

function init(args)
  -- threads start at different offsets so they do not send identical rows in lockstep
  index = math.random(#bodies) - 1
end

function request()
  index = index % #bodies + 1
  return wrk.format("POST", path, headers, bodies[index])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "SBENCH requests=%d duration_us=%d p50=%d p95=%d p99=%d max=%d mean=%.1f "
      .. "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout
  ))
end
