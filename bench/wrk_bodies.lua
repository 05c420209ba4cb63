-- wrk script: POSTs the bodies of a file (one JSON document per line) in
-- rotation, each thread starting at a different offset, and prints the
-- latency distribution as one JSON line at the end.
local bodies = {}
local path = os.getenv("WRK_BODIES")
local target = os.getenv("WRK_PATH") or "/v1/is_authorized"
local token = os.getenv("WRK_TOKEN")
for line in io.lines(path) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
local counter = 0
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  counter = offset or 0
end

function request()
  counter = counter + 1
  local body = bodies[(counter % #bodies) + 1]
  local headers = { ["Content-Type"] = "application/json" }
  if token then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", target, headers, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status or 0
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
