-- Random inputs for the differential and crash specs: a seeded generator
-- of values (of varied shapes, many that views skip) and of view scripts
-- (source strings of the three kinds, with filters, composite keys, lists
-- of keys, reduces returning nil, and errors thrown at a chosen seq).
-- Everything comes from the seed alone, so a seed replays exactly.
local G = {}

--- A xorshift64 generator of its own, so that nothing else calling
-- math.random can shift a case's choices.
function G.rng(seed)
  local s = (seed * 0x9E3779B97F4A7C15) ~ 0x2545F4914F6CDD1D
  if s == 0 then s = 1 end
  local r = {}
  local function nxt()
    s = s ~ (s << 13)
    s = s ~ (s >> 7)
    s = s ~ (s << 17)
    return s
  end
  --- An integer in [a, b].
  function r.int(a, b) return a + (nxt() >> 1) % (b - a + 1) end
  --- True with probability p.
  function r.chance(p) return (nxt() >> 11) * 2.0 ^ -53 < p end
  function r.pick(t) return t[r.int(1, #t)] end
  --- Picks from { {weight, value}, ... }.
  function r.weighted(t)
    local total = 0
    for _, e in ipairs(t) do total = total + e[1] end
    local x = r.int(1, total)
    for _, e in ipairs(t) do
      x = x - e[1]
      if x <= 0 then return e[2] end
    end
  end
  return r
end

-- Keys that exercise the order: every type, integers and floats of equal
-- value, -0.0, integers past 2^53, the extremes, strings with 00 and ff
-- bytes, prefixes.
G.KEYS = { "a", "b", "ab", "", "a\0", "a\0b", "\1", "\255", "z", "post",
  0, 1, -1, 2, 3, 3.0, 2.5, -0.0, 0.0, 1e300, -1e-300, 2 ^ 53,
  (1 << 53) + 1, (1 << 53) - 1, math.maxinteger, math.mininteger,
  math.huge, -math.huge, true, false }

-- Composite keys.
G.COMPOSITES = { { "a", 1 }, { "a" }, {}, { "a", 1.0 }, { 1, "a" },
  { "a", { "b" } }, { true, false }, { "a", 2 }, { "b", -1 } }

--- A random key (a composite now and then).
function G.key(r)
  if r.chance(0.12) then return r.pick(G.COMPOSITES) end
  return r.pick(G.KEYS)
end

--- Bounds for a range read over keys: at most one lower and one upper.
function G.key_bounds(r)
  local o = {}
  local lo = r.int(0, 2)
  if lo == 1 then o.gt = G.key(r) elseif lo == 2 then o.gte = G.key(r) end
  local hi = r.int(0, 2)
  if hi == 1 then o.lt = G.key(r) elseif hi == 2 then o.lte = G.key(r) end
  if r.chance(0.4) then o.reverse = true end
  if r.chance(0.4) then o.limit = r.int(0, 6) end
  return o
end

local STRINGS = { "", "x", "hello", "a\0b", ("y"):rep(40), "\255\254",
  "post", "like" }

--- A value: mostly tables with some of the fields views look at (t, n,
-- f, b, s, tags, k, x), and now and then ones every view skips (scalars,
-- tables without those fields).
function G.value(r)
  local c = r.int(1, 12)
  if c <= 7 then
    local v = {}
    if r.chance(0.75) then v.t = G.key(r) end
    if r.chance(0.7) then v.n = r.int(-3, 20) end
    if r.chance(0.3) then v.f = r.pick({ 0.5, -1.25, 3.0, 1e10, -0.0 }) end
    if r.chance(0.3) then v.b = r.chance(0.5) end
    if r.chance(0.4) then v.s = r.pick(STRINGS) end
    if r.chance(0.4) then
      local tags = {}
      for i = 1, r.int(0, 3) do tags[i] = G.key(r) end
      v.tags = tags
    end
    if r.chance(0.25) then v.k = { r.pick(STRINGS), r.int(0, 3) } end
    if r.chance(0.2) then v.x = { y = G.key(r) } end
    if r.chance(0.1) then v.w = G.odd(r) end
    if r.chance(0.1) then G.widen(r, v) end
    return v
  end
  return G.skippable(r)
end

--- A field's value for wide values: scalars of every encoding, strings
-- short and long, nested tables and lists.
function G.field(r)
  local c = r.int(1, 9)
  if c == 1 then return r.int(-1000, 100000) end
  if c == 2 then return r.pick({ 0.5, -1.25, 3.0, 1e10, -0.0, 2 ^ 53 }) end
  if c == 3 then return r.chance(0.5) end
  if c == 4 then return r.pick(STRINGS) end
  if c == 5 then return string.rep("w", r.int(30, 300)) end
  if c == 6 then return { r.int(0, 9), r.pick(STRINGS), { z = r.int(0, 3) } } end
  if c == 7 then return { a = r.int(0, 9), b = { c = r.pick(STRINGS) } } end
  if c == 8 then return G.key(r) end
  return {}
end

--- Adds up to twenty fields f1..f20 to table v (values of ~20 fields, of
-- which views read a few: lazy decoding, runtime/views/lazy.c); now and
-- then integer keys 1..k too, and a boolean or float key.
function G.widen(r, v)
  for i = 1, 20 do
    if r.chance(0.8) then v["f" .. i] = G.field(r) end
  end
  if r.chance(0.2) then
    for i = 1, r.int(1, 4) do v[i] = G.field(r) end
  end
  if r.chance(0.1) then v[true] = G.field(r) end
  if r.chance(0.1) then v[2.5] = G.field(r) end
  return v
end

--- Odd data for a value's payload: deep nesting, long strings and lists,
-- numbers at the edges of their encodings.
function G.odd(r)
  local c = r.int(1, 7)
  if c == 1 then
    local t = {}
    local cur = t
    for _ = 1, r.int(1, 40) do cur.d = {} cur = cur.d end
    return t
  elseif c == 2 then
    return string.rep("q", r.int(100, 70000))
  elseif c == 3 then
    local t = {}
    for i = 1, r.int(15, 300) do t[i] = i * 3 end
    return t
  elseif c == 4 then
    return r.pick({ 127, 128, 255, 256, 65535, 65536, -32, -33, -128, -129,
      -32768, -32769, 4294967295, 4294967296, -2147483648, -2147483649,
      math.maxinteger, math.mininteger, 5e-324, 2.2250738585072014e-308,
      1.7976931348623157e308, 0.1 })
  elseif c == 5 then
    local t = {}
    for i = 1, r.int(16, 40) do t["k" .. i] = i end
    return t
  elseif c == 6 then
    return string.rep("\0\255", r.int(16, 40000))
  end
  return { {}, { {} }, "", false }
end

--- A value for a database whose codec takes only strings.
function G.string_value(r)
  if r.chance(0.5) then return r.pick(STRINGS) end
  local t = {}
  for i = 1, r.int(0, 12) do t[i] = string.char(r.int(0, 255)) end
  return table.concat(t)
end

--- A value that most views skip.
function G.skippable(r)
  local c = r.int(1, 6)
  if c == 1 then return { z = r.int(0, 9) } end
  if c == 2 then return r.pick(STRINGS) end
  if c == 3 then return r.int(-100, 100) end
  if c == 4 then return r.chance(0.5) and 1.5 or true end
  if c == 5 then return {} end
  return { 1, 2, "three" }
end

-- Mappers: chunks returning function(value, seq).
G.MAPPERS = {
  [[return function(v, seq)
  if type(v) == "table" then v.m = seq % 3 end
  return v
end]],
  [[return function(v, seq)
  if type(v) ~= "table" then return { t = v, wrapped = true } end
  return v
end]],
}

-- Expressions over a table value v and its seq, which may be nil.
local KEY_EXPRS = {
  "v.t", "v.t", "v.n", "v.f", "v.b", "v.k", "seq % 4",
  "(v.t ~= nil and v.n ~= nil) and { v.t, v.n } or nil",
  "v.x and v.x.y", "v.m",
  "type(v.s) == 'string' and #v.s or nil",
  "type(v.s) == 'string' and v.s or nil",
  "v.f3",
}

-- Expressions that are no key.
G.BAD_KEYS = { "0/0", "{ bad = 1 }", "{ 1, { 0/0 } }", "type",
  "{ [2] = 'hole' }" }

-- Expressions over a string value v.
local STRING_KEY_EXPRS = { "v:sub(1, 1)", "#v", "v", "{ v:sub(1, 1), #v }",
  "v:byte(1)", "v:sub(2, 3)" }
local STRING_FILTERS = { "#v % 2 == 0", "v:find('a', 1, true) ~= nil",
  "v == ''" }

local FILTERS = {
  "type(v.n) == 'number' and v.n % 3 == 0",
  "v.b == true",
  "v.t == nil",
  "seq % 2 == 1",
  "type(v.n) ~= 'number'",
}

local GROUP_VALS = { "1", "v.n", "seq", "{ seq = seq }", "v.f" }

local GROUP_REDUCES = {
  -- count
  "return (acc or 0) + 1",
  -- sum of numbers; a key whose first value is no number keeps no acc
  "if type(x) ~= 'number' then return acc end return (acc or 0) + x",
  -- deletes now and then
  "if seq % 3 == 2 then return nil end return (acc or 0) + 1",
  -- toggles: a second value deletes the key
  "if acc then return nil end return seq",
  -- a bounded list, mutated in place
  "acc = acc or {} acc[#acc + 1] = seq " ..
    "if #acc > 4 then table.remove(acc, 1) end return acc",
  -- a record naming its key
  "return { key = key, last = seq, n = ((acc and acc.n) or 0) + 1 }",
}

local REDUCE_INITIALS = { nil, "0", "{ sum = 0, count = 0 }", "''" }

local REDUCE_BODIES = {
  "return (s or 0) + 1",
  "if type(x) == 'number' then return (s or 0) + x end return s",
  "s = type(s) == 'table' and s or { sum = 0, count = 0 } " ..
    "s.count = s.count + 1 " ..
    "if type(x) == 'table' and type(x.n) == 'number' then " ..
    "s.sum = s.sum + x.n end return s",
  "if seq % 5 == 4 then return nil end return (type(s) == 'number' and s " ..
    "or 0) + 1",
  "return ((type(s) == 'string' and s or '') .. " ..
    "(type(x) == 'table' and 'T' or 'S')):sub(-12)",
}

local INDEX_RETURNS = {
  "k", "k", "{ k }", "{ k, k }", "{ { k, seq % 3 } }", "{ k, { k } }", "{}",
  "v.tags",
}

--- Options steering the generator away from known defects:
--   never_nil_group    group maps never skip a value (issue 8 defect 1)
--   no_bad_index_key   index maps return no bad key (see the spec's
--                      KNOWN_DEFECTS.index_bad_key)
--   max_seq            the largest seq at which a script may fail
--- A view script's source: kind, version and optionally the seq at which
-- it throws. Returns src, a one-line summary.
function G.script(r, version, opts)
  opts = opts or {}
  local key_exprs, filters = KEY_EXPRS, FILTERS
  if opts.strings then key_exprs, filters = STRING_KEY_EXPRS, STRING_FILTERS end
  local kind = r.pick({ "reduce", "group", "index", "group", "index" })
  local fail_at = r.chance(0.3) and r.int(0, opts.max_seq or 40) or nil
  local boom = fail_at and string.format(
    "if seq == %d then error('boom at %d') end ", fail_at, fail_at) or ""
  -- or an error after the reduce has changed its state in place
  local late = fail_at and kind ~= "index" and r.chance(0.5)
  if late then boom = "" end
  -- or a key that is no key at the chosen seq (group and index views)
  local bad_key = kind ~= "reduce" and fail_at and not late and
    r.chance(0.4) and
    not (kind == "index" and opts.no_bad_index_key)
  if bad_key then
    local bad = r.pick(G.BAD_KEYS)
    if kind == "index" then
      boom = string.format("if seq == %d then return %s end ", fail_at,
        r.chance(0.5) and bad or "{ 'before', " .. bad .. " }")
    else
      boom = string.format("if seq == %d then return %s, 1 end ", fail_at,
        bad)
    end
  end
  -- most scripts skip scalar values; some do not, and fail on them
  local guard = r.chance(0.9) and "if type(v) ~= '" ..
    (opts.strings and "string" or "table") .. "' then return nil end " or ""
  local lines = { "return {", "  version = " .. version .. "," }
  if kind == "reduce" then
    local init = r.pick(REDUCE_INITIALS)
    if init then lines[#lines + 1] = "  initial = " .. init .. "," end
    if r.chance(0.5) then
      local filter = r.chance(0.5) and
        ("if " .. r.pick(filters) .. " then return nil end ") or ""
      lines[#lines + 1] = "  map = function(v, seq) " .. boom .. guard ..
        filter .. "return v end,"
      boom = ""
      if not init then lines[#lines + 1] = "  kind = 'reduce'," end
    end
    local body = r.pick(REDUCE_BODIES)
    if late then
      body = "s = type(s) == 'table' and s or { count = 0 } " ..
        "s.count = (s.count or 0) + 1 " .. string.format(
        "if seq == %d then error('late boom at %d') end ", fail_at, fail_at)
        .. "return s"
    end
    lines[#lines + 1] = "  reduce = function(s, x, seq) " .. boom ..
      body .. " end,"
  elseif kind == "group" then
    local body = "local k = " .. r.pick(key_exprs) .. " "
    if opts.never_nil_group then
      guard = "if type(v) ~= '" .. (opts.strings and "string" or "table") ..
        "' then return 'other', 1 end "
      body = body .. "if k == nil then k = 'none' end "
    elseif r.chance(0.4) then
      body = body .. "if " .. r.pick(filters) .. " then return nil end "
    end
    lines[#lines + 1] = "  map = function(v, seq) " .. boom .. guard ..
      body .. "return k, " .. r.pick(GROUP_VALS) .. " end,"
    local body = r.pick(GROUP_REDUCES)
    if late then
      body = "acc = acc or {} acc[#acc + 1] = seq " .. string.format(
        "if seq == %d then error('late boom at %d') end ", fail_at, fail_at)
        .. "return acc"
    end
    lines[#lines + 1] = "  reduce = function(acc, x, key, seq) " .. body ..
      " end,"
  else
    local body = "local k = " .. r.pick(key_exprs) .. " "
    if r.chance(0.3) then
      body = body .. "if " .. r.pick(filters) .. " then return nil end "
    end
    local ret = r.pick(INDEX_RETURNS)
    if opts.strings and ret == "v.tags" then ret = "{ k }" end
    if ret ~= "v.tags" then
      body = body .. "if k == nil then return nil end "
    end
    lines[#lines + 1] = "  map = function(v, seq) " .. boom .. guard ..
      body .. "return " .. ret .. " end,"
  end
  if r.chance(0.4) then
    -- async methods: the state, or the stored entries through the read
    -- handle (compared with the model by the spec)
    -- peek: the same as dump, a sync method (not since-gated)
    if kind == "reduce" then
      lines[#lines + 1] = "  methods = { dump = { 'async', function(s) " ..
        "return s end }, peek = { 'sync', function(s) return s end } },"
    else
      lines[#lines + 1] = "  methods = {\n" ..
        "    dump = { 'async', function(h, o) local out = {} " ..
        "for k, a in h.read(o) do out[#out + 1] = { k, a } end " ..
        "return out end },\n" ..
        "    peek = { 'sync', function(h, o) local out = {} " ..
        "for k, a in h.read(o) do out[#out + 1] = { k, a } end " ..
        "return out end },\n" ..
        "    one = { 'async', function(h, k) return h.get(k) end },\n  },"
    end
  end
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n"), kind, fail_at
end

return G
