-- GET a list of paths (BENCH_DATA, a Lua file returning a list of strings), cycled
-- through: open pixels (/o/<token>) or click redirects (/c/<token>) of sent emails.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local paths = dofile(os.getenv("BENCH_DATA"))
local n = 0
local offset = 0
wrk.headers["User-Agent"] = os.getenv("BENCH_UA")

function init(args)
  offset = (id or 1) * 7919
end

function request()
  n = n + 1
  return wrk.format("GET", paths[(offset + n) % #paths + 1])
end
