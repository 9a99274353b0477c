-- Real-program benchmark for lua5.4 (cargo xtask bench --real).
-- Models a Lua application (a game or tool scripting layer): building and serialising
-- JSON-like trees of tables and parsing them back, an expression language compiled to
-- closures, string building with string.format/gsub/table.concat, and a cache of tables
-- under churn; the garbage collector runs throughout. Every allocation of the Lua state
-- goes through realloc/free. Prints "ok <checksum>"; the checksum is the same under any
-- correct allocator.

local MOD = 2147483647
local checksum = 0
local function mix(x) checksum = (checksum * 31 + x) % MOD end

-- A deterministic pseudo-random generator (the program must do the same work every run).
local seed = 88172645463325252
local function rand(n)
  seed = seed ~ (seed << 13)
  seed = seed ~ (seed >> 7)
  seed = seed ~ (seed << 17)
  return (seed >> 1) % n
end

-- 1. JSON-like trees: build, encode (keys sorted), decode, compare.
local words = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
               "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi"}

local function make_tree(depth)
  if depth == 0 or rand(4) == 0 then
    local k = rand(3)
    if k == 0 then return rand(1000000)
    elseif k == 1 then return words[rand(#words) + 1] .. "-" .. rand(1000)
    else return rand(2) == 0 end
  end
  if rand(2) == 0 then
    local t = {}
    for i = 1, rand(8) + 1 do t[i] = make_tree(depth - 1) end
    return t
  end
  local t = {}
  for _ = 1, rand(6) + 1 do t[words[rand(#words) + 1] .. rand(50)] = make_tree(depth - 1) end
  return t
end

local function is_array(t)
  local n = #t
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n then return false end
  end
  return true
end

local function encode(v, out)
  local ty = type(v)
  if ty == "number" then out[#out + 1] = tostring(v)
  elseif ty == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif ty == "string" then out[#out + 1] = '"' .. v .. '"'
  elseif is_array(v) then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      encode(v[i], out)
    end
    out[#out + 1] = "]"
  else
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = '"' .. k .. '":'
      encode(v[k], out)
    end
    out[#out + 1] = "}"
  end
end

local function decode(s)
  local pos = 1
  local value
  local function skip() pos = s:find("[^ ]", pos) or pos end
  function value()
    skip()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      if s:sub(pos, pos) == "}" then pos = pos + 1 return t end
      while true do
        local q = s:find('"', pos + 1, true)
        local k = s:sub(pos + 1, q - 1)
        pos = q + 2 -- past '":'
        t[k] = value()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "}" then return t end
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1
      if s:sub(pos, pos) == "]" then pos = pos + 1 return t end
      while true do
        t[#t + 1] = value()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "]" then return t end
      end
    elseif c == '"' then
      local q = s:find('"', pos + 1, true)
      local v = s:sub(pos + 1, q - 1)
      pos = q + 1
      return v
    elseif s:sub(pos, pos + 3) == "true" then pos = pos + 4 return true
    elseif s:sub(pos, pos + 4) == "false" then pos = pos + 5 return false
    else
      local a, b = s:find("^-?%d+", pos)
      pos = b + 1
      return math.tointeger(tonumber(s:sub(a, b)))
    end
  end
  return value()
end

for _ = 1, 700 do
  local tree = make_tree(6)
  local out = {}
  encode(tree, out)
  local text = table.concat(out)
  local back = {}
  encode(decode(text), back)
  local again = table.concat(back)
  if again ~= text then error("JSON round trip differs") end
  mix(#text)
end

-- 2. An expression language compiled to closures.
local function parse_expr(tokens, i)
  local function primary()
    local t = tokens[i]; i = i + 1
    if t == "(" then
      local e = parse_expr(tokens, i)
      i = e.next + 1 -- past ")"
      return e.node
    elseif t:match("^%d") then return {op = "num", value = tonumber(t)}
    else return {op = "var", name = t} end
  end
  local function term()
    local left = primary()
    while tokens[i] == "*" or tokens[i] == "%" do
      local op = tokens[i]; i = i + 1
      left = {op = op, left, primary()}
    end
    return left
  end
  local left = term()
  while tokens[i] == "+" or tokens[i] == "-" do
    local op = tokens[i]; i = i + 1
    left = {op = op, left, term()}
  end
  return {node = left, next = i}
end

local function compile(node)
  if node.op == "num" then local v = node.value return function() return v end end
  if node.op == "var" then local n = node.name return function(env) return env[n] end end
  local a, b = compile(node[1]), compile(node[2])
  if node.op == "+" then return function(env) return (a(env) + b(env)) % 1000003 end end
  if node.op == "-" then return function(env) return (a(env) - b(env)) % 1000003 end end
  if node.op == "*" then return function(env) return (a(env) * b(env)) % 1000003 end end
  return function(env) local d = b(env) if d == 0 then return a(env) end return a(env) % d end
end

local function gen_expr(depth)
  if depth == 0 or rand(3) == 0 then
    if rand(2) == 0 then return tostring(rand(100)) end
    return "v" .. rand(10)
  end
  local ops = {"+", "-", "*", "%"}
  return "( " .. gen_expr(depth - 1) .. " " .. ops[rand(4) + 1] .. " " .. gen_expr(depth - 1) .. " )"
end

for _ = 1, 7000 do
  local src = gen_expr(7)
  local tokens = {}
  for tok in src:gmatch("%S+") do tokens[#tokens + 1] = tok end
  local fn = compile(parse_expr(tokens, 1).node)
  for k = 1, 20 do
    local env = {}
    for v = 0, 9 do env["v" .. v] = rand(1000) + k end
    mix(fn(env))
  end
end

-- 3. String building: a report of records formatted, rewritten and split again.
for round = 1, 150 do
  local lines = {}
  for i = 1, 2000 do
    lines[i] = string.format("%06d;%s;%s;%.2f", i, words[(i + round) % #words + 1],
      string.rep(words[i % #words + 1], i % 5 + 1), (i * round) / 7)
  end
  local doc = table.concat(lines, "\n")
  doc = doc:gsub("(%a+);", function(w) return w:upper() .. ";" end)
  local fields = 0
  for line in doc:gmatch("[^\n]+") do
    for _ in line:gmatch("[^;]+") do fields = fields + 1 end
  end
  mix(#doc + fields)
end

-- 4. A cache of records under churn: insert, look up, evict the oldest.
local cache, order, head, tail = {}, {}, 1, 0
for i = 1, 300000 do
  local key = "user:" .. rand(60000)
  local rec = cache[key]
  if rec then
    rec.hits = rec.hits + 1
    rec.tags[#rec.tags + 1] = words[i % #words + 1]
    mix(rec.hits)
  else
    cache[key] = {id = key, hits = 1, tags = {words[i % #words + 1]}, payload = string.rep("x", i % 200)}
    tail = tail + 1
    order[tail] = key
    if tail - head > 20000 then
      cache[order[head]] = nil
      order[head] = nil
      head = head + 1
    end
  end
end

print("ok " .. checksum)
