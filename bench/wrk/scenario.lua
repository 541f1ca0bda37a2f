-- scenario.lua: the one wrk script behind every scenario of bench/run.sh.
--
-- wrk gives each of its threads (-t) its own Lua state; the main state runs
-- setup() per thread and done() at the end. Everything is configured through
-- environment variables (bench/run.sh sets them):
--
--   BENCH_KIND        login | profile | nickname | cold | baseline
--   BENCH_MODE        fixed | random          (login, profile, nickname)
--   BENCH_THREADS     wrk's -t (to split the fixed users between threads)
--   BENCH_FIXED_N     fixed mode: distinct users (= the connection count)
--   BENCH_USERS       login: file of user ids, one a line (the pool, spread
--                     over 1..N); profile/nickname: file of "id token" lines
--                     written by bench/sessions.py. Fixed mode uses the first
--                     BENCH_FIXED_N lines, random mode all of them.
--   BENCH_COLD_BASE   cold: first user id of this run's private id range
--   BENCH_COLD_SPAN   cold: ids available from BENCH_COLD_BASE on
--   BENCH_COLD_MOD, BENCH_COLD_SKIP
--                     cold: ids with id % MOD == SKIP belong to the warm pool
--                     and are skipped, so cold and pool users are disjoint
--   BENCH_PASSWORD    password of every test user (password123)
--   BENCH_OUT         done() writes the run's figures there as JSON
--
-- fixed: wrk's Lua API has no connection identity, so a thread cycles
-- round-robin over its share of the fixed users (connections / threads of
-- them): c distinct users in all, each with about one request in flight, as
-- if every connection kept its own user. random: every request draws a user
-- uniformly from the whole pool (10,000 users spread over 1..N).
--
-- Every response is checked in response(): status 200 (204 nowhere here) and
-- a body field (the username, plus the nickname for updates, plus the session
-- cookie for logins). Anything else is counted as a failure, and the first
-- few are kept as samples for the report.

local kind = os.getenv("BENCH_KIND") or "profile"
local mode = os.getenv("BENCH_MODE") or "fixed"
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
local fixed_n = tonumber(os.getenv("BENCH_FIXED_N") or "200")
local users_file = os.getenv("BENCH_USERS")
local cold_base = tonumber(os.getenv("BENCH_COLD_BASE") or "1000000")
local cold_span = tonumber(os.getenv("BENCH_COLD_SPAN") or "100000")
local cold_mod = tonumber(os.getenv("BENCH_COLD_MOD") or "1000")
local cold_skip = tonumber(os.getenv("BENCH_COLD_SKIP") or "-1")
local password = os.getenv("BENCH_PASSWORD") or "password123"
local out_path = os.getenv("BENCH_OUT")

-- main state: number the threads and keep them for done()
local threads = {}
local next_tid = 0

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
   table.insert(threads, thread)
end

-- per-thread state (set in init)
local reqs = {}      -- pre-formatted requests (one or two per user)
local ids = {}       -- user id of each entry of reqs / toggle
local valid = {}     -- valid[id] = true for the ids this thread may see
local count = 0      -- entries in ids
local rr = 0         -- fixed mode: round-robin position
local toggle = {}    -- nickname: which of the two nicknames comes next
fails = 0            -- responses that failed the check (read by done())
samples = ""         -- the first failures, for the report
local nsamples = 0

local function fail(status, why, body)
   fails = fails + 1
   if nsamples < 5 then
      nsamples = nsamples + 1
      body = body or ""
      samples = samples .. string.format("status %d: %s: %s\n", status, why,
         string.sub(body, 1, 160):gsub("[%c]", " "))
   end
end

local function read_lines(path)
   local list = {}
   local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
   for line in f:lines() do
      if line ~= "" then table.insert(list, line) end
   end
   f:close()
   return list
end

local function login_request(id)
   return wrk.format("POST", "/api/v1/login",
      { ["Content-Type"] = "application/json" },
      string.format('{"username":"user%d","password":"%s"}', id, password))
end

local function profile_request(token)
   return wrk.format("GET", "/api/v1/profile", { ["Cookie"] = "session=" .. token })
end

local function nickname_request(token, id, which)
   return wrk.format("PATCH", "/api/v1/profile",
      { ["Content-Type"] = "application/json", ["Cookie"] = "session=" .. token },
      string.format('{"nickname":"bench-%d-%s"}', id, which))
end

function init(args)
   local tid = tonumber(wrk.thread:get("tid")) or 0
   math.randomseed(os.time() * 1000 + tid * 7919)
   if kind == "baseline" then
      reqs[1] = wrk.format("GET", "/")
      return
   end
   if kind == "cold" then
      -- this thread's ids: cold_base + tid, + nthreads, ... (disjoint per thread)
      rr = cold_base + tid
      return
   end
   local lines = read_lines(users_file)
   local limit = #lines
   if mode == "fixed" then limit = math.min(fixed_n, #lines) end
   for i = 1, limit do
      -- fixed: thread tid takes every nthreads-th user; random: all of them
      if mode ~= "fixed" or (i - 1) % nthreads == tid then
         local id, token = string.match(lines[i], "^(%d+)%s*(%S*)")
         id = tonumber(id)
         count = count + 1
         ids[count] = id
         valid[id] = true
         if kind == "login" then
            reqs[count] = login_request(id)
         elseif kind == "profile" then
            reqs[count] = profile_request(token)
         elseif kind == "nickname" then
            reqs[count] = { nickname_request(token, id, "a"), nickname_request(token, id, "b") }
            toggle[count] = 1
         end
      end
   end
   assert(count > 0, "no users for this thread in " .. tostring(users_file))
end

function request()
   if kind == "baseline" then return reqs[1] end
   if kind == "cold" then
      -- every request a user never used before in this run
      local id = rr
      rr = rr + nthreads
      while id % cold_mod == cold_skip do id = rr; rr = rr + nthreads end
      if id >= cold_base + cold_span then
         error("cold id range exhausted: raise BENCH_COLD_SPAN")
      end
      return login_request(id)
   end
   local i
   if mode == "fixed" then
      rr = rr % count + 1
      i = rr
   else
      i = math.random(count)
   end
   if kind == "nickname" then
      local t = toggle[i]
      toggle[i] = 3 - t
      return reqs[i][t]
   end
   return reqs[i]
end

local function has_session_cookie(headers)
   for k, v in pairs(headers) do
      if string.lower(k) == "set-cookie" and string.find(v, "session=", 1, true) == 1 then
         return true
      end
   end
   return false
end

function response(status, headers, body)
   if status ~= 200 then
      fail(status, "status", body)
      return
   end
   if kind == "baseline" then return end
   local id = tonumber(string.match(body, '"username"%s*:%s*"user(%d+)"'))
   if id == nil then
      fail(status, "no username", body)
      return
   end
   if kind == "cold" then
      if id < cold_base or id >= cold_base + cold_span then
         fail(status, "unexpected user", body)
      elseif not has_session_cookie(headers) then
         fail(status, "no session cookie", body)
      end
      return
   end
   if not valid[id] then
      fail(status, "unexpected user", body)
      return
   end
   if kind == "login" and not has_session_cookie(headers) then
      fail(status, "no session cookie", body)
   elseif kind == "nickname" then
      local nick = string.match(body, '"nickname"%s*:%s*"([^"]*)"')
      if nick ~= "bench-" .. id .. "-a" and nick ~= "bench-" .. id .. "-b" then
         fail(status, "wrong nickname", body)
      end
   end
end

local function json_string(s)
   return '"' .. s:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end) .. '"'
end

function done(summary, latency, requests)
   local total_fails, all_samples = 0, ""
   for _, t in ipairs(threads) do
      total_fails = total_fails + (tonumber(t:get("fails")) or 0)
      all_samples = all_samples .. (t:get("samples") or "")
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   local out = string.format(
      '{"kind":"%s","mode":"%s","duration_s":%.3f,"requests":%d,"bytes":%d,' ..
      '"rps":%.1f,"check_failures":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d},"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,' ..
      '"max":%d,"p50":%d,"p90":%d,"p99":%d,"p99.9":%d},"failure_samples":%s}\n',
      kind, mode, secs, summary.requests, summary.bytes, summary.requests / secs,
      total_fails, e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), json_string(all_samples))
   if out_path then
      local f = assert(io.open(out_path, "w"))
      f:write(out)
      f:close()
   else
      io.write(out)
   end
end
