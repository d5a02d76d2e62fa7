-- wrk script: replays prepared requests, one per line of the file in $BENCH_REQUESTS.
-- A line is: METHOD <TAB> PATH <TAB> AUTHORIZATION <TAB> CONTENT-TYPE <TAB> BODY ("-" = none).
-- Requests are formatted once per thread in init(), so request() costs wrk almost nothing;
-- each thread starts at a different line so that parallel connections use different users.
-- done() prints one JSON line (prefixed "BENCH_RESULT ") that bench/run.py parses.

local counter = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local prepared = {}
local position = 1

local function split_tabs(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    table.insert(fields, field)
  end
  return fields
end

function init(args)
  local path = os.getenv("BENCH_REQUESTS")
  local file = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in file:lines() do
    if line ~= "" then
      local f = split_tabs(line)
      local headers = {}
      if f[3] ~= "-" then headers["Authorization"] = f[3] end
      local body = nil
      if f[4] ~= "-" then
        headers["Content-Type"] = f[4]
        body = f[5]
      end
      table.insert(prepared, wrk.format(f[1], f[2], headers, body))
    end
  end
  file:close()
  assert(#prepared > 0, "no requests in " .. path)
  position = (thread_id * 7919) % #prepared + 1
end

function request()
  local r = prepared[position]
  position = position % #prepared + 1
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
