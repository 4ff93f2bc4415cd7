-- wrk script of bench/http_surge.py: every request a citizen of its own (a token from a
-- file, an address among many behind carrier NAT), a fresh Idempotency-Key, and the answers
-- counted by status. Arguments after `--`: mode (hold | get), the token file (one
-- "account token" line each, or "-"), the file of targets (slot ids for holds, paths for
-- reads), the first account index to use (rows must not reuse each other's accounts), the
-- number of wrk threads, the path of holds and (paced rows) the mean pause in milliseconds
-- each connection takes between its answer and its next request, drawn uniformly from half
-- to one and a half times it so that 1 000 connections do not send in step. wrk measures a
-- request's latency from its send, so the pause is never part of a latency figure.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function lines(path)
  local found = {}
  if path == "-" then return found end
  for line in io.lines(path) do
    if #line > 0 then table.insert(found, line) end
  end
  return found
end

function init(args)
  mode = args[1]
  tokens = lines(args[2])
  targets = lines(args[3])
  first = tonumber(args[4] or "0")
  nthreads = tonumber(args[5] or "1")
  path_for_holds = args[6] or "/api/v1/holds"
  pause_ms = tonumber(args[7] or "0")
  if pause_ms > 0 then
    -- wrk looks for delay() after init: defined only for paced rows (a closed loop has none)
    function delay()
      return math.random(math.floor(pause_ms / 2), math.floor(pause_ms * 3 / 2))
    end
  end
  statuses = {}
  math.randomseed(tid * 7919 + os.time())
end

-- Each request is written out whole by one string.format (the headers wrk.format would
-- write from a table, in a fixed order): wrk.format builds a table and formats each header
-- apart. wrk shares the server's two cores; this took its CPU a granted hold from .026-.030
-- to .021-.024 ms (bench/README.md, session 18).
local HOLD = "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n" ..
  "Idempotency-Key: k%d-%d-%d\r\nContent-Type: application/json\r\n" ..
  "X-Forwarded-For: 10.%d.%d.7\r\nContent-Length: %d\r\n\r\n%s"
local GET = "GET %s HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: 10.%d.%d.7\r\n\r\n"

function request()
  counter = counter + 1
  local n = first + tid + (counter - 1) * nthreads
  local target = targets[(n % #targets) + 1]
  local a, b = n % 250, math.floor(n / 250) % 8
  if mode == "get" then
    return string.format(GET, target, wrk.headers["Host"], a, b)
  end
  local body = '{"slotId":"' .. target .. '"}'
  return string.format(HOLD, path_for_holds, wrk.headers["Host"], tokens[(n % #tokens) + 1],
    tid, counter, math.random(1, 1000000000), a, b, #body, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counted = thread:get("statuses")
    for status, n in pairs(counted) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, '"' .. status .. '":' .. n)
  end
  io.write(string.format(
    'WRK-RESULT {"requests":%d,"seconds":%.3f,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, table.concat(parts, ",")))
end
