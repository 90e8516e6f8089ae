-- The command line's JSON Lines codec (flume.json) and `flume cat --values |
-- flume append` (issue 9, item 13): every value the log holds round-trips
-- exactly; hostile lines get a clear error, never a crash or a silent
-- change. Random cases print their seed; FLUME_JSON_SEED replays one,
-- FLUME_JSON_CASES sets how many.
local json = require "flume.json"
local core = require "flume.core"
local H = require "helpers.db"

local ARRAY = json.array_mt
local maxint, minint = math.maxinteger, math.mininteger
local CASES = tonumber(os.getenv("FLUME_JSON_CASES") or "") or 2000
local SEED = tonumber(os.getenv("FLUME_JSON_SEED") or "") or os.time()

--- Exact equality: integers vs floats, float bits (NaN payloads, -0.0),
-- empty arrays vs empty maps.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false end
    if math.type(a) == "float" then
      return string.pack("<d", a) == string.pack("<d", b)
    end
    return a == b
  end
  if type(a) ~= "table" then return a == b end
  if next(a) == nil or next(b) == nil then
    return next(a) == nil and next(b) == nil and
      (getmetatable(a) == ARRAY) == (getmetatable(b) == ARRAY)
  end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function bits(b) return (string.unpack("<d", string.pack("<i8", b))) end

local INTS = { 0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536,
  (1 << 31) - 1, 1 << 31, -(1 << 31), (1 << 32), 1 << 53, (1 << 53) + 1,
  -(1 << 53) - 1, 1 << 62, maxint, minint, maxint - 1, minint + 1,
  9007199254740993 }
local FLOATS = { 0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 1e300, -1e-300, 5e-324,
  2.2250738585072014e-308, 1.7976931348623157e308, 2 ^ 53, 2 ^ 63, -2 ^ 63,
  2 ^ 64, 123456789.125, math.huge, -math.huge, bits(0x7ff8000000000000),
  bits(0xfff8000000000000), bits(0x7ff0000000000001), bits(0xfff4000000000abc),
  math.pi, -math.pi * 1e-200 }
local STRINGS = { "", "a", "post", "\0", "a\0b", '"', "\\", "/", "\b\f\n\r\t",
  "\1\31\127", "é", "日本", "😀", "\u{2028}\u{2029}", "\u{10FFFF}",
  "\xff", "\xc3", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80",
  "\xc0\xaf", "ok\xffok", "$map", "$float", "$bytes", "$", "null",
  "[]", "{}", "1.0", ("x"):rep(300) }

local rnd
local function pick(t) return t[rnd(#t)] end

local function gen_key()
  local r = rnd(10)
  if r <= 5 then return pick(STRINGS) end
  if r <= 7 then return pick(INTS) end
  if r <= 8 then
    local f = pick(FLOATS)
    if f ~= f then f = 1.5 end
    return f
  end
  return rnd(2) == 1
end

local gen
local function gen_table(depth)
  local r = rnd(7)
  if r == 1 then return {} end
  if r == 2 then return setmetatable({}, ARRAY) end
  if r == 3 then -- a list, maybe with holes the log keeps
    local n, t = rnd(6), {}
    for i = 1, n do t[i] = gen(depth + 1) end
    if n >= 3 and rnd(2) == 1 then t[rnd(n - 1)] = nil end
    return t
  end
  if r == 4 then -- one key, maybe a tag's name
    return { [pick { "$map", "$float", "$bytes", "a" }] = gen(depth + 1) }
  end
  local t = {}
  for _ = 1, rnd(5) do
    local k = r == 5 and pick(STRINGS) or gen_key()
    t[k] = gen(depth + 1)
  end
  return t
end

function gen(depth)
  local r = rnd(depth > 4 and 8 or 11)
  if r <= 2 then return pick(INTS) end
  if r == 3 then return rnd(-1000000, 1000000) end
  if r <= 5 then return pick(FLOATS) end
  if r == 6 then return (rnd() - 0.5) * 10 ^ rnd(-300, 300) end
  if r <= 7 then return pick(STRINGS) end
  if r == 8 then return rnd(2) == 1 end
  return gen_table(depth)
end

local function check_round_trip(v, what)
  local s = json.encode(v)
  assert(not s:find("\n"), what .. ": a newline in " .. s)
  assert(utf8.len(s), what .. ": not UTF-8: " .. s)
  local ok, back = pcall(json.decode, s)
  assert(ok, what .. ": decode(" .. s .. ") raised " .. tostring(back))
  assert(same(v, back), what .. ": " .. s .. " came back different")
  assert.equal(s, json.encode(back))
  -- and the log stores it as it was (a map's pairs may come in another
  -- order: compare values)
  assert(same(v, core.decode(core.encode(back), true)),
    what .. ": " .. s .. " changed in the log")
  -- through the log: decoded as `flume cat` does, the same JSON
  assert.equal(s, json.encode(core.decode(core.encode(v), true)))
end

describe("flume.json", function()
  it("keeps the values the issue found changed", function()
    local cases = {
      { "9007199254740993", 9007199254740993 },
      { "9223372036854775807", maxint },
      { "-9223372036854775808", minint },
      { "4611686018427387904", 1 << 62 },
      { "1.0", 1.0 }, { "-0.0", -0.0 }, { "[]", setmetatable({}, ARRAY) },
      { "{}", {} }, { '{"$float":"inf"}', math.huge },
      { '{"$float":"-inf"}', -math.huge },
    }
    for _, c in ipairs(cases) do
      local v = json.decode(c[1])
      assert(same(c[2], v), c[1] .. " decoded to " .. tostring(v))
      assert.equal(c[1], json.encode(c[2]))
    end
    local nan = json.decode('{"$float":"nan"}')
    assert(nan ~= nan)
  end)

  it("round-trips every tricky scalar and table exactly", function()
    for _, v in ipairs(INTS) do check_round_trip(v, "int " .. v) end
    for i, v in ipairs(FLOATS) do check_round_trip(v, "float " .. i) end
    for i, v in ipairs(STRINGS) do check_round_trip(v, "string " .. i) end
    for _, v in ipairs {
      {}, setmetatable({}, ARRAY), { setmetatable({}, ARRAY), {} },
      { 1, nil, 3 }, { nil, 2 }, { [10] = "x" }, { [true] = 1, [false] = 0 },
      { [1.5] = 1, x = 2 }, { [math.huge] = 1, [-math.huge] = 2 },
      { ["$map"] = 1 }, { ["$float"] = "inf" }, { ["$bytes"] = "00" },
      { ["\xff"] = 1 }, { a = { b = { c = {} } } }, { [0] = 1 }, { [-1] = 1 },
      { 1, 2, x = 3 }, { [1] = 1, [3] = 3 }, { [1] = 1, [4] = 4 },
    } do
      check_round_trip(v, json.encode(v))
    end
  end)

  it("round-trips " .. CASES .. " generated values exactly (seed " ..
    SEED .. ")", function()
    local state = SEED
    -- a small LCG of our own, so that a seed replays on any Lua
    rnd = function(a, b)
      state = (state * 6364136223846793005 + 1442695040888963407)
      local x = (state >> 11) / (1 << 53)
      if a == nil then return x end
      if b == nil then a, b = 1, a end
      return a + math.floor(x * (b - a + 1))
    end
    for i = 1, CASES do
      local v = gen(0)
      local ok, err = pcall(check_round_trip, v, "case " .. i)
      if not ok then
        error("seed " .. SEED .. " case " .. i .. ": " .. tostring(err), 0)
      end
    end
  end)

  it("keeps tables up to the log's depth and refuses deeper ones", function()
    assert.equal(100, json.max_depth) -- the depth the README states
    local v = {}
    for _ = 2, json.max_depth do v = { v } end
    check_round_trip(v, "depth " .. json.max_depth)
    local m = { [10] = 1 }
    for _ = 2, json.max_depth do m = { [10] = m } end
    check_round_trip(m, "$map depth " .. json.max_depth)
    H.raises(function() json.encode({ v }) end, "^flume: EINVAL: .*deeper")
    local line = json.encode(v)
    H.raises(function() json.decode("[" .. line .. "]") end,
      "^flume: EINVAL: .*deeper")
    H.raises(function() json.decode('{"$map":[[1,' .. json.encode(m) ..
      ']]}') end, "^flume: EINVAL: .*deeper")
    local cyclic = {}
    cyclic.self = cyclic
    H.raises(function() json.encode(cyclic) end, "^flume: EINVAL: .*cyclic")
    H.raises(function() json.encode(print) end, "^flume: EINVAL")
  end)

  local hostile = {
    { "", "no value" }, { "   ", "no value" }, { "nul", "" },
    { ("["):rep(100000), "deeper" }, { ('{"a":'):rep(100000), "deeper" },
    { ("["):rep(101) .. ("]"):rep(101), "deeper" },
    { ("1"):rep(5000), "int64" }, { "1" .. ("0"):rep(400) .. ".0", "too large" },
    { "1e999999", "too large" }, { "-1e400", "too large" },
    { "9223372036854775808", "int64" }, { "-9223372036854775809", "int64" },
    { '"\xff"', "UTF%-8" }, { '"\xc3\x28"', "UTF%-8" },
    { '"\xed\xa0\x80"', "UTF%-8" }, { '"\xc0\xaf"', "UTF%-8" },
    { '"\\ud800"', "surrogate" }, { '"\\udc00"', "surrogate" },
    { '"\\ud800\\u0041"', "surrogate" }, { '"\\ud800x"', "surrogate" },
    { '"\\u12"', "hex" }, { '"\\x41"', "escape" }, { '"abc', "unterminated" },
    { '"a\tb"', "control" }, { "1 2", "trailing" }, { "{} x", "trailing" },
    { "[1]]", "trailing" }, { "01", "" }, { "1.", "" }, { ".5", "" },
    { "+1", "" }, { "0x10", "" }, { "NaN", "" }, { "Infinity", "" },
    { "[1,]", "" }, { '{"a":1,}', "" }, { '{"a" 1}', "" }, { "{1:2}", "" },
    { '{"a":1,"a":2}', "duplicate" }, { '{"":1,"":2}', "duplicate" },
    { "[1,null]", "null" },
    { "[null,null,1]", "null" }, { '{"$float":"x"}', "float" },
    { '{"$float":1}', "float" }, { '{"$bytes":"abc"}', "bytes" },
    { '{"$map":5}', "map" }, { '{"$map":[[1]]}', "pair" },
    { '{"$map":[[{},1]]}', "key" }, { '{"$map":[[1,1],[1,2]]}', "twice" },
    { '{"$map":[[{"$float":"nan"},1]]}', "NaN" }, { "\0", "" },
    { "tru", "" }, { "[", "" }, { "{", "" },
  }

  it("refuses " .. #hostile .. " hostile lines with a clear error", function()
    for _, c in ipairs(hostile) do
      local ok, err = pcall(json.decode, c[1])
      assert(not ok, ("%q decoded"):format(c[1]:sub(1, 60)))
      assert(type(err) == "string" and err:find("^flume: EINVAL: .+ at byte %d+$")
        and err:find(c[2]), ("%q: %s"):format(c[1]:sub(1, 60), tostring(err)))
    end
    H.raises(function() json.decode(5) end, "^flume: EINVAL")
  end)

  it("answers mangled lines with a value or a clear error, never another",
    function()
      local state = SEED + 1
      local function r(n)
        state = state * 6364136223846793005 + 1442695040888963407
        return 1 + ((state >> 33) % n)
      end
      local bytes = { "[", "]", "{", "}", '"', "\\", ",", ":", "0", "-", ".",
        "e", "n", "\0", "\xff", "\xc3", "u", "d", "8", " " }
      for i = 1, 3000 do
        local line = json.encode({ a = { 1, 2.5, "x\0y" }, ["$map"] = {},
          b = math.huge, [7] = true, s = "é\xff" })
        for _ = 1, r(4) do
          local at = r(#line + 1)
          local how = r(3)
          if how == 1 then
            line = line:sub(1, at - 1) .. bytes[r(#bytes)] .. line:sub(at)
          elseif how == 2 then
            line = line:sub(1, at - 1) .. line:sub(at + 1)
          else
            line = line:sub(1, at)
          end
        end
        local ok, v = pcall(json.decode, line)
        if ok then
          check_round_trip(v, "mangled " .. i)
        else
          assert(type(v) == "string" and v:find("^flume: EINVAL: "),
            ("seed %d case %d: %q raised %s"):format(SEED, i, line,
              tostring(v)))
        end
      end
    end)
end)

describe("flume cat --values | flume append", function()
  local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
  local BIN = ROOT .. "/views-lua/bin/flume"
  local function sh(cmd)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("a")
    local _, _, code = p:close()
    return out, code
  end
  local function flume(args)
    return sh(H.lua .. " '" .. BIN .. "' " .. args)
  end

  it("round-trips every kind of value the log holds, exactly", function()
    local dir = H.tmpdir()
    local lines = {}
    for _, v in ipairs(INTS) do lines[#lines + 1] = json.encode(v) end
    for _, v in ipairs(FLOATS) do lines[#lines + 1] = json.encode(v) end
    for _, v in ipairs(STRINGS) do lines[#lines + 1] = json.encode(v) end
    for _, v in ipairs { {}, setmetatable({}, ARRAY), { 1, nil, 3 },
      { [10] = "x" }, { [true] = 1 }, { ["$map"] = 1 }, { a = { {} } },
      { l = setmetatable({}, ARRAY) } } do
      lines[#lines + 1] = json.encode(v)
    end
    lines[#lines + 1] = "null"
    local input = table.concat(lines, "\n") .. "\n"
    local f = assert(io.open(dir .. "/in", "wb"))
    f:write(input)
    f:close()
    for _, db in ipairs { "a", "b" } do
      local out, code = flume("init '" .. dir .. "/" .. db .. "'")
      assert.equal(0, code, out)
    end
    local out, code = flume("append '" .. dir .. "/a' < '" .. dir .. "/in'")
    assert.equal(0, code, out)
    assert.equal(tostring(#lines - 1) .. "\n", out)
    local first, c1 = flume("cat '" .. dir .. "/a' --values")
    assert.equal(0, c1, first)
    assert.equal(input, first)
    out, code = flume("cat '" .. dir .. "/a' --values | " .. H.lua .. " '" ..
      BIN .. "' append '" .. dir .. "/b'")
    assert.equal(0, code, out)
    local second = flume("cat '" .. dir .. "/b' --values")
    assert.equal(input, second)
    H.rm(dir)
  end)

  it("names the line of a value it cannot take", function()
    local dir = H.tmpdir()
    flume("init '" .. dir .. "/db'")
    local f = assert(io.open(dir .. "/in", "wb"))
    f:write('1\n2.5\n9223372036854775808\n')
    f:close()
    local out, code = flume("append '" .. dir .. "/db' < '" .. dir .. "/in'")
    assert.equal(1, code)
    assert.truthy(out:find("line 3: bad JSON: integer 9223372036854775808 " ..
      "is outside the int64 range"), out)
    H.rm(dir)
  end)
end)

-- The command's C fast path (runtime/json.c: core.json_to_mp and
-- core.mp_to_json) takes the common values and leaves the rest to
-- flume.json: whatever it takes, it must convert to exactly what flume.json
-- gives, on generated values and on hostile mutations of their bytes.
describe("the JSON fast path", function()
  local function lcg(seed)
    local state = seed
    return function(a, b)
      state = (state * 6364136223846793005 + 1442695040888963407)
      local x = (state >> 11) / (1 << 53)
      if a == nil then return x end
      if b == nil then a, b = 1, a end
      return a + math.floor(x * (b - a + 1))
    end
  end

  -- A plain value: what most logs hold (the fast path must take it).
  local function plain(depth)
    local r = rnd(depth > 3 and 5 or 7)
    if r == 1 then return rnd(-100000, 100000) end
    if r == 2 then return pick(INTS) end
    if r == 3 then return (rnd() - 0.5) * 10 ^ rnd(-20, 20) end
    if r == 4 then return pick { "post", "é", "a\"b\\c\n", "日本", "" } end
    if r == 5 then return rnd(2) == 1 end
    if r == 6 then
      local t = {}
      for i = 1, rnd(0, 4) do t[i] = plain(depth + 1) end
      return #t == 0 and setmetatable(t, ARRAY) or t
    end
    local t = {}
    for _ = 1, rnd(0, 5) do
      t[pick { "type", "author", "n", "text", "a b", "é", "x\0y" }] =
        plain(depth + 1)
    end
    return t
  end

  local function mutate(s)
    local r, i = rnd(4), rnd(math.max(#s, 1))
    if r == 1 then return s:sub(1, i - 1) end
    if r == 2 then
      return s:sub(1, i - 1) .. string.char(rnd(0, 255)) .. s:sub(i + 1)
    end
    if r == 3 then
      return s:sub(1, i - 1) .. pick { "null", ",", "]", "}", '"', "\\",
        "-", "e", ".", "$", "\xc0", "\x90", "\x80", "\xc0" } .. s:sub(i)
    end
    return s:sub(1, i - 1) .. s:sub(i + 2)
  end

  local function check_mp(bytes, what)
    local c = core.mp_to_json(bytes)
    if c == nil then return 0 end
    local ok, v = pcall(core.decode, bytes, true)
    assert(ok, what .. ": the fast path took bytes flume's decoder " ..
      "refuses: " .. tostring(v))
    local ok2, ref = pcall(json.encode, v)
    assert(ok2, what .. ": the fast path wrote what flume.json cannot")
    assert(c == ref, what .. ": fast " .. c .. " but flume.json " .. ref)
    return 1
  end

  local function check_line(line, what)
    local mp = core.json_to_mp(line)
    if mp == nil then return 0 end
    local ok, ref = pcall(json.decode, line)
    assert(ok, what .. ": the fast path took a line flume.json refuses: " ..
      ("%q"):format(line) .. ": " .. tostring(ref))
    assert(same(core.decode(mp, true), ref), what .. ": " ..
      ("%q"):format(line) .. " converts to another value")
    return 1
  end

  it("agrees with flume.json on generated values and their mutations " ..
     "(seed " .. SEED .. ")", function()
    rnd = lcg(SEED)
    local took_mp, took_line, total = 0, 0, 0
    for i = 1, CASES do
      local what = ("seed %d case %d"):format(SEED, i)
      local v = i % 2 == 0 and gen(0) or plain(0)
      local ok, bytes = pcall(core.encode, v)
      if ok then
        total = total + 1
        took_mp = took_mp + check_mp(bytes, what)
        local line = json.encode(core.decode(bytes, true))
        took_line = took_line + check_line(line, what)
        for k = 1, 3 do
          check_line(mutate(line), what .. " line mutation " .. k)
          check_mp(mutate(bytes), what .. " bytes mutation " .. k)
        end
      end
    end
    -- the fast path is taken: plain values are half of the cases
    assert.is_true(took_mp > total / 3, took_mp .. " of " .. total)
    assert.is_true(took_line > total / 3, took_line .. " of " .. total)
  end)

  it("leaves what it does not take to flume.json", function()
    for _, line in ipairs { "null", "[1,null,3]", '{"a":null}',
      '{"$float":"inf"}', '{"$map":[[1,2]]}', '{"$x":1}', "1e400",
      "9223372036854775808", "01", '"\\ud800"', '{"a":1,"a":2}', "[1,]",
      "tru", '"\1"', "1 2", "\xff", "" } do
      assert.is_nil(core.json_to_mp(line), line)
    end
    for _, v in ipairs { 0 / 0, math.huge, "\xff", { [1] = 1, [3] = 3 },
      { [10] = "x" }, { ["$map"] = 1 }, { 1, nil, 3 } } do
      assert.is_nil(core.mp_to_json(core.encode(v)), json.encode(v))
    end
    assert.is_nil(core.mp_to_json("\xc0")) -- nil
    assert.is_nil(core.mp_to_json("\x91")) -- cut short
    assert.is_nil(core.mp_to_json("\x01\x02")) -- two values
    assert.is_nil(core.mp_to_json("\xd4\x01\x02")) -- an extension
  end)
end)
