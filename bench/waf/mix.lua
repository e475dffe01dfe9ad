-- wrk script: a benign mix, or the same mix with one request in six an attack.
-- Usage: wrk ... -s mix.lua URL -- benign|attack [VARIANTS]
--
-- Every request carries a session cookie of its own and the benign requests a search term,
-- page, address or quantity of their own (VARIANTS of each, cycled), as a site's visitors
-- send; the other header values repeat, as one browser's do. A WAF that remembers values it
-- saw recently (Tandem's per-thread memos) is measured on what it cannot remember too. The
-- variants cycle every 5 × VARIANTS requests (default 200: every 1,000); a memo that holds a
-- whole cycle would remember those values as well, so VARIANTS=5000 (a 25,000-request
-- cycle) checks that a gain is not the benchmark's cycle being remembered.

local reqs = {}
local n = 0
local VARIANTS = 200

local ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"

local function session(v)
  -- 32 hex digits that differ for every variant (a session id's shape).
  return string.format("%08x%08x%08x%08x", (v * 2654435761) % 4294967296, v * 40503 % 65521,
    (v * 97 + 13) % 4294967296, (v * 1103515245 + 12345) % 2147483648)
end

-- A host name, as browsers send: wrk's default Host is the numeric address, which CRS rule
-- 920350 flags (a warning, below the blocking threshold) on every request.
local function with(v, extra)
  local h = {
    ["Host"] = "shop.example.com",
    ["User-Agent"] = ua,
    ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ["Accept-Language"] = "en-US,en;q=0.9",
    ["Accept-Encoding"] = "gzip, deflate",
    ["Cookie"] = "session=" .. session(v) .. "; theme=dark",
  }
  for k, x in pairs(extra or {}) do h[k] = x end
  return h
end

local terms = { "blue+running+shoes", "red+scarf", "wool+socks", "rain+jacket", "trail+boots" }

local function benign(v)
  local term = terms[(v % #terms) + 1] .. "+" .. v
  return {
    wrk.format("GET", "/products/list?page=" .. (v % 9 + 1) .. "&sort=price&q=" .. term, with(v)),
    wrk.format("GET", "/static/app.js?v=20240601", with(v, {["Accept"] = "*/*"})),
    wrk.format("POST", "/checkout", with(v, {["Content-Type"] = "application/x-www-form-urlencoded"}),
      "name=Jane+Doe&email=jane%40example.com&address=" .. (v % 90 + 10) ..
      "+Main+St&city=Springfield&zip=" .. (10000 + v) .. "&note=leave+at+the+door"),
    wrk.format("POST", "/api/orders", with(v, {["Content-Type"] = "application/json", ["Accept"] = "application/json"}),
      '{"items":[{"sku":"A-' .. (100 + v) .. '","qty":' .. (v % 4 + 1) ..
      '},{"sku":"B-7","qty":1}],"coupon":"SPRING","note":"gift wrap please"}'),
    wrk.format("GET", "/account/orders?from=2024-01-01&to=2024-06-" .. (v % 28 + 1), with(v)),
  }
end

local function attacks(v)
  return {
    wrk.format("GET", "/search?q=1%27%20UNION%20SELECT%20username,password%20FROM%20users--", with(v)),
    wrk.format("GET", "/page?file=../../../../etc/passwd", with(v)),
    wrk.format("POST", "/comment", with(v, {["Content-Type"] = "application/x-www-form-urlencoded"}),
      "text=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"),
    wrk.format("GET", "/ping?host=127.0.0.1%3Bcat%20/etc/passwd", with(v)),
  }
end

function init(args)
  VARIANTS = tonumber(args[2]) or VARIANTS
  for v = 1, VARIANTS do
    local b = benign(v)
    if args[1] == "attack" then
      -- 5 benign : 1 attack: 20 benign + 4 attacks (1 in 6) per 4 variants, as before.
      for _, r in ipairs(b) do table.insert(reqs, r) end
      table.insert(reqs, attacks(v)[(v % 4) + 1])
    else
      for _, r in ipairs(b) do table.insert(reqs, r) end
    end
  end
end

function request()
  n = n + 1
  return reqs[(n % #reqs) + 1]
end
