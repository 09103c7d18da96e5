-- POST /p/<slug>: each request sends a session cookie with its CSRF token and a
-- `started` token, all fetched beforehand by real page views (BENCH_DATA, a Lua file
-- returning a list of {cookie, csrf, started}), cycled through, and a unique email.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local data = dofile(os.getenv("BENCH_DATA"))
local slug = os.getenv("BENCH_SLUG") or "bench"
local prefix = os.getenv("BENCH_PREFIX")
local user_agent = os.getenv("BENCH_UA")
local n = 0
local offset = 0

function init(args)
  offset = (id or 1) * 7919
end

function request()
  n = n + 1
  local item = data[(offset + n) % #data + 1]
  local body = "csrf_token=" .. item.csrf .. "&started=" .. item.started ..
               "&website=&name=Bench+Lead&consent=y&email=" .. prefix .. id .. "-" .. n ..
               "%40example.com"
  return wrk.format("POST", "/p/" .. slug, {
    ["Cookie"] = item.cookie,
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["User-Agent"] = user_agent,
  }, body)
end
