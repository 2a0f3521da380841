-- wrk script: counts the X-Cache header of every answer (used for every target
-- of bench.packages_page, so each pays the same client-side cost).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  hit, miss, bypass, none = 0, 0, 0, 0
end

function response(status, headers, body)
  local value = headers["x-cache"] or headers["X-Cache"]
  if value == "hit" then
    hit = hit + 1
  elseif value == "miss" then
    miss = miss + 1
  elseif value == "bypass" then
    bypass = bypass + 1
  else
    none = none + 1
  end
end

function done(summary, latency, requests)
  local h, m, b, n = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    h = h + thread:get("hit")
    m = m + thread:get("miss")
    b = b + thread:get("bypass")
    n = n + thread:get("none")
  end
  io.write(string.format("X-Cache hit=%d miss=%d bypass=%d none=%d\n", h, m, b, n))
end
