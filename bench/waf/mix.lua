-- wrk script: a benign mix, or the same mix with one request in five an attack.
-- Usage: wrk ... -s mix.lua URL -- benign|attack

local reqs = {}
local n = 0

local ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
-- A host name, as browsers send: wrk's default Host is the numeric address, which CRS rule
-- 920350 flags (a warning, below the blocking threshold) on every request.
local base = {
  ["Host"] = "shop.example.com",
  ["User-Agent"] = ua,
  ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
  ["Accept-Language"] = "en-US,en;q=0.9",
  ["Accept-Encoding"] = "gzip, deflate",
  ["Cookie"] = "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark",
}

local function with(extra)
  local h = {}
  for k, v in pairs(base) do h[k] = v end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

function init(args)
  local benign = {
    wrk.format("GET", "/products/list?page=2&sort=price&q=blue+running+shoes", with()),
    wrk.format("GET", "/static/app.js?v=20240601", with({["Accept"] = "*/*"})),
    wrk.format("POST", "/checkout", with({["Content-Type"] = "application/x-www-form-urlencoded"}),
      "name=Jane+Doe&email=jane%40example.com&address=12+Main+St&city=Springfield&zip=12345&note=leave+at+the+door"),
    wrk.format("POST", "/api/orders", with({["Content-Type"] = "application/json", ["Accept"] = "application/json"}),
      '{"items":[{"sku":"A-100","qty":2},{"sku":"B-7","qty":1}],"coupon":"SPRING","note":"gift wrap please"}'),
    wrk.format("GET", "/account/orders?from=2024-01-01&to=2024-06-30", with()),
  }
  local attacks = {
    wrk.format("GET", "/search?q=1%27%20UNION%20SELECT%20username,password%20FROM%20users--", with()),
    wrk.format("GET", "/page?file=../../../../etc/passwd", with()),
    wrk.format("POST", "/comment", with({["Content-Type"] = "application/x-www-form-urlencoded"}),
      "text=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"),
    wrk.format("GET", "/ping?host=127.0.0.1%3Bcat%20/etc/passwd", with()),
  }
  for _, r in ipairs(benign) do table.insert(reqs, r) end
  if args[1] == "attack" then
    -- 5 benign : 1 attack per round, over 4 rounds: 20 benign + 4 attacks (1 in 6).
    reqs = {}
    for round = 1, 4 do
      for _, r in ipairs(benign) do table.insert(reqs, r) end
      table.insert(reqs, attacks[round])
    end
  end
end

function request()
  n = n + 1
  return reqs[(n % #reqs) + 1]
end
