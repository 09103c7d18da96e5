-- GET /p/<slug> as first-time visitors from ads: a browser user agent, no cookie (a
-- new visitor id each time), UTM parameters rotating over a few sources.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local slug = os.getenv("BENCH_SLUG") or "bench"
local sources = {"google", "facebook", "newsletter", "partner", "instagram"}
local n = 0
wrk.headers["User-Agent"] = os.getenv("BENCH_UA")

function request()
  n = n + 1
  local path = string.format("/p/%s?utm_source=%s&utm_medium=cpc&utm_campaign=spring-%d",
                             slug, sources[n % #sources + 1], n % 7)
  return wrk.format("GET", path)
end
