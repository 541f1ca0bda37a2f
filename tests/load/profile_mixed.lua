-- wrk script: 9 of 10 requests GET /api/v1/profile, 1 of 10 PATCH the
-- nickname, with the session cookie in $PROFILE_TOKEN; counts answers by
-- status (any non-200 is a failed request, read or write).
local token = os.getenv("PROFILE_TOKEN")
local threads = {}
local n = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function request()
  n = n + 1
  local headers = {["Cookie"] = "session=" .. token}
  if n % 10 == 0 then
    headers["Content-Type"] = "application/json"
    return wrk.format("PATCH", "/api/v1/profile", headers, '{"nickname":"load ' .. n .. '"}')
  end
  return wrk.format("GET", "/api/v1/profile", headers)
end

function response(status, headers, body)
  local key = status .. ""
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, c in pairs(s) do total[code] = (total[code] or 0) + c end
  end
  local parts = {}
  for code, c in pairs(total) do table.insert(parts, code .. "=" .. c) end
  table.sort(parts)
  io.write(string.format("statuses: %s\n", table.concat(parts, " ")))
  io.write(string.format("socket errors: connect=%d read=%d write=%d timeout=%d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
  io.write(string.format("requests: %d  p50=%.1fms p99=%.1fms\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
