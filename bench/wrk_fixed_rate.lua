-- wrk at a fixed rate with Debian's wrk 4.1 (which has no -R): `wrk -c C ... -s bench/wrk_fixed_rate.lua URL -- RATE C`
-- makes each of the C connections wait C / RATE seconds between its requests, so the total is RATE requests a
-- second while the server keeps up. Each connection is still a closed loop: a stalled response delays that
-- connection's next request (coordinated omission), so wrk's percentiles understate a stall; `stockcast bench
-- serve` also runs its own open-loop generator (testkit::load_at_rate), which measures from each request's
-- scheduled start. At the end: one line of status counts and one of totals and latency percentiles (µs).
-- RATE 0: no pacing (closed loop). With `-- RATE C SYMBOLS DATE...` each request is a `POST /v1/predict` of
-- SYMBOLS (a JSON list body, e.g. '"S0001","S0002"') for the next of the DATEs in turn, each thread starting at
-- its own offset (bench/fault_run.sh: a client cycling through old days, and one asking for the latest).
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 7)
  table.insert(threads, thread)
end

function init(args)
  rate = tonumber(args[1]) or 1000
  conns = tonumber(args[2]) or 8
  symbols = args[3]
  dates = {}
  for i = 4, #args do
    dates[#dates + 1] = args[i]
  end
  n = offset or 0
  statuses = {}
end

function delay()
  if rate == 0 then
    return 0
  end
  return 1000 * conns / rate
end

function request()
  if #dates == 0 then
    return wrk.format()
  end
  n = n + 1
  local body = string.format('{"symbols": [%s], "date": "%s"}', symbols, dates[(n - 1) % #dates + 1])
  return wrk.format("POST", "/v1/predict", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      all[code] = (all[code] or 0) + n
    end
  end
  io.write("wrk-statuses")
  for code, n in pairs(all) do
    io.write(string.format(" %d=%d", code, n))
  end
  local e = summary.errors
  io.write(string.format("\nwrk-totals requests=%d socket_errors=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99),
    latency.max))
end
