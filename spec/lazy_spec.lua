-- Lazy decoding (runtime/views/lazy.c): views receive a map value as a
-- proxy that decodes the fields they read. Every view kind, with scripts
-- that read few fields, miss, walk the value (pairs, next, ipairs, #, the
-- raw functions, the table library), change it, keep it in their state or
-- accumulators, return it as a key, or set a metatable on it, must give
-- exactly what a full decode gives. The full decode is the same database
-- with an identity mapper: the mapper sees, and hands on, fully decoded
-- values.
local flume = require "flume"
local H = require "helpers.db"
local M = require "helpers.model"
local G = require "helpers.gen"

local same, show = M.same, M.show

-- Seeds (FLUME_LAZY_SEEDS=N for more). Under sanitizers, where opening
-- a database costs seconds, one seed of 80 values, the views together
-- only (spec/c/test_lazy.c takes the proxies through their paths there).
local SAN = H.sanitized()
local SEEDS = tonumber(os.getenv("FLUME_LAZY_SEEDS") or "") or
  (SAN and 1 or 6)
local VALUES = SAN and 80 or 160

-- Helpers every script gets (a prelude): a signature of a value that does
-- not depend on the order pairs visits it in.
local PRELUDE = [[
local function sig(v, depth)
  depth = depth or 0
  if type(v) ~= "table" then
    return type(v) .. ":" .. (math.type(v) or "") .. tostring(v)
  end
  if depth > 3 then return "{...}" end
  local parts = {}
  for k, x in pairs(v) do
    parts[#parts + 1] = sig(k, 9) .. "=" .. sig(x, depth + 1)
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ",") .. "}"
end
]]

-- Bodies of map(v, seq): each returns a key (or nil to skip) and a
-- value; index views use the key only, reduce views the value.
local MAPS = {
  few = "if type(v) ~= 'table' then return nil end " ..
    "return v.f3 ~= nil and sig(v.f3) or 'none', sig(v.f17)",
  misses = "if type(v) ~= 'table' then return nil end local n = 0 " ..
    "for i = 1, 25 do if v['f' .. i] ~= nil then n = n + 1 end end " ..
    "if v.nope ~= nil or v[99] ~= nil or v[false] ~= nil then n = -1 end " ..
    "return n, n",
  again = "if type(v) ~= 'table' then return nil end " ..
    "local a, b, c = v.t, v.f1, v.t return sig(a) .. sig(c), sig(b)",
  pairs = "if type(v) ~= 'table' then return nil end " ..
    "local s = sig(v) return #s, s",
  partial_pairs = "if type(v) ~= 'table' then return nil end " ..
    "local a = v.f2 local s = sig(v) return sig(a) .. #s, s",
  next = "if type(v) ~= 'table' then return nil end " ..
    "local k = next(v) local n = 0 for _ in next, v do n = n + 1 end " ..
    "return n, k == nil",
  raw = "if type(v) ~= 'table' then return nil end " ..
    "return sig(rawget(v, 'f5')) .. sig(rawget(v, 'n')), " ..
    "sig({ rawlen(v), #v, getmetatable(v) == nil, rawequal(v, v) })",
  len = "if type(v) ~= 'table' then return nil end " ..
    "local l = #v local t = {} for i, x in ipairs(v) do t[i] = sig(x) end " ..
    "return l, table.concat(t, ';')",
  tablelib = "if type(v) ~= 'table' then return nil end " ..
    "local ok, s = pcall(table.concat, v, ',') " ..
    "local n = select('#', table.unpack(v)) return n, tostring(ok) .. " ..
    "(ok and s or '')",
  nested = "if type(v) ~= 'table' then return nil end " ..
    "local x = v.x and v.x.y local t = v.tags and v.tags[1] " ..
    "local w = type(v.f6) == 'table' and v.f6[2] " ..
    "return sig(x) .. sig(t), sig(w)",
  keys = "if type(v) ~= 'table' then return nil end " ..
    "return sig(v[1]) .. sig(v[true]) .. sig(v[2.5]) .. sig(v[2]), 1",
  errors = "if type(v) ~= 'table' then return nil end " ..
    "local ok, e = pcall(next, v, 'no such key') " ..
    "local ok2, e2 = pcall(function() return v < v end) " ..
    "local ok3, e3 = pcall(function() return v + 1 end) " ..
    "return tostring(ok) .. tostring(e) .. tostring(ok2) .. e2:gsub('^.-: ', '') .. " ..
    "e3:gsub('^.-: ', ''), 1",
}

-- Maps that change the value: each runs alone in its own database pair
-- (the views after it would see the change, a known hole of the README).
local WRITES = {
  remove_read = "if type(v) ~= 'table' then return nil end " ..
    "local a = v.f1 v.f1 = nil v.t = nil local b = v.f1 " ..
    "return sig(v), sig(a) .. sig(b) .. sig(v.t)",
  add = "if type(v) ~= 'table' then return nil end " ..
    "v.added = seq v[#v + 1] = 'end' return sig(v), #v",
  rawset = "if type(v) ~= 'table' then return nil end " ..
    "rawset(v, 'f4', nil) rawset(v, 'z', 1) return sig(v), 1",
  setmeta = "if type(v) ~= 'table' then return nil end " ..
    "setmetatable(v, { __index = function(t, k) return 'dflt' end }) " ..
    "return sig(v.f9) .. sig(v.missing) .. sig(v.t), 1",
  insert = "if type(v) ~= 'table' then return nil end " ..
    "table.insert(v, 'x') table.sort({ 3, 1 }) return sig(v), #v",
  nil_key = "if type(v) ~= 'table' then return nil end " ..
    "local ok, e = pcall(function() v[nil] = 1 end) " ..
    "local ok2, e2 = pcall(function() v[0/0] = 1 end) " ..
    "return tostring(ok) .. tostring(e) .. tostring(ok2) .. tostring(e2), 1",
}

-- A script of each kind around a map body.
local function scripts(body)
  local map = "function(v, seq) " .. body .. " end"
  return {
    group = PRELUDE .. "return { version = 1, map = " .. map ..
      ", reduce = function(acc, x, key, seq) " ..
      "acc = acc or {} acc[#acc + 1] = x return acc end }",
    index = PRELUDE .. "return { version = 1, map = function(v, seq) " ..
      "local k = (" .. map .. ")(v, seq) return k end }",
    reduce = PRELUDE .. "return { version = 1, initial = {}, " ..
      "map = function(v, seq) local k, x = (" .. map .. ")(v, seq) " ..
      "if k == nil then return nil end return { k, x } end, " ..
      "reduce = function(s, x, seq) s[#s + 1] = x return s end }",
  }
end

-- Views that keep values, or hand them back to be encoded.
local KEEPERS = {
  keep_state = "return { version = 1, initial = {}, reduce = function(s, " ..
    "v, seq) if seq % 3 == 0 then s[#s + 1] = v end return s end }",
  keep_acc = "return { version = 1, map = function(v, seq) return seq % 5, " ..
    "v end, reduce = function(acc, v) return v end }",
  keep_nested = "return { version = 1, map = function(v, seq) return " ..
    "seq % 4, v end, reduce = function(acc, v, key, seq) acc = acc or {} " ..
    "acc[#acc + 1] = { seen = v, [type(v) == 'table' and 'k' or 'x'] = 1 } " ..
    "if #acc > 3 then table.remove(acc, 1) end return acc end }",
  value_key = "return { version = 1, map = function(v, seq) " ..
    "if seq % 7 == 3 then return v end return 'k' end }",
  value_in_key = "return { version = 1, map = function(v, seq) " ..
    "if seq % 11 == 5 then return { { 'a', v } } end return 'k' end }",
  group_key = "return { version = 1, map = function(v, seq) " ..
    "if seq % 13 == 6 then return v, 1 end return 'k', 1 end, " ..
    "reduce = function(a, n) return (a or 0) + n end }",
  methods = "return { version = 1, initial = {}, reduce = function(s, v, " ..
    "seq) s.last = v return s end, methods = { last = { 'sync', " ..
    "function(s) return s.last end } } }",
}

-- Everything a view holds, or its error.
local function contents(db, name, kind)
  local ok, res = pcall(function()
    if kind == "reduce" then return db[name]:get({ timeout = 60 }) end
    local out = {}
    for k, a, b in db[name]:read({ timeout = 60 }) do
      out[#out + 1] = { k, a, b }
    end
    return out
  end)
  if ok then return res end
  -- The key encoder names the first key pairs finds that makes a table
  -- no list: pairs' order is Lua's, which differs from one Lua state to
  -- another (string hashes are seeded per state), here as between any
  -- two databases.
  return "error: " .. tostring(res):gsub("non%-sequence keys.*",
    "non-sequence keys ...")
end

local function values(seed)
  local r = G.rng(seed)
  local out = {}
  for i = 1, VALUES do
    local v = G.value(r)
    if type(v) == "table" and r.chance(0.5) then G.widen(r, v) end
    out[i] = v
  end
  return out
end

local function pair(vals, defs, opts)
  local dbs = {
    lazy = flume.open(nil, { sync = false }),
    full = flume.open(nil, { sync = false,
      mapper = function(v) return v end }),
  }
  for _, db in pairs(dbs) do
    for _, d in ipairs(defs) do db:use(d.name, d.src) end
    local half = #vals // 2
    db:append({ table.unpack(vals, 1, half) }, { batch = true })
    for i = half + 1, #vals do db:append(vals[i]) end
  end
  for _, d in ipairs(defs) do
    local a = contents(dbs.lazy, d.name, d.kind)
    local b = contents(dbs.full, d.name, d.kind)
    if not same(a, b) then
      error(string.format("view %s (%s) differs%s:\nscript: %s\nlazy: %s\n" ..
        "full: %s", d.name, d.kind, opts or "", d.src:sub(-400),
        show(a):sub(1, 1500), show(b):sub(1, 1500)), 0)
    end
  end
  if opts == "methods" then
    local a = { pcall(function() return dbs.lazy.methods:last() end) }
    local b = { pcall(function() return dbs.full.methods:last() end) }
    assert(same(a, b), show(a) .. "\n" .. show(b))
  end
  for _, db in pairs(dbs) do db:close() end
end

describe("lazy decoding", function()
  for seed = 1, SEEDS do
    it("gives every view kind what a full decode gives (seed " .. seed ..
      ")", function()
      local vals = values(seed)
      local defs = {}
      for name, body in pairs(MAPS) do
        for kind, src in pairs(scripts(body)) do
          defs[#defs + 1] = { name = name .. "_" .. kind, kind = kind,
            src = src }
        end
      end
      table.sort(defs, function(a, b) return a.name < b.name end)
      -- all together (a value one view made whole reaches the next so),
      -- then each alone (it reads the value first)
      pair(vals, defs)
      if SAN then return end
      for _, d in ipairs(defs) do pair(vals, { d }) end
    end)

    it("keeps what views change in a value (seed " .. seed .. ")",
      function()
      local vals = values(seed + 1000)
      local names = {}
      for name in pairs(WRITES) do names[#names + 1] = name end
      table.sort(names)
      for _, name in ipairs(names) do
        for kind, src in pairs(scripts(WRITES[name])) do
          if not SAN or kind == "group" then
            pair(vals, { { name = name, kind = kind, src = src } })
          end
        end
      end
    end)

    it("settles values views keep or return as keys (seed " .. seed ..
      ")", function()
      local vals = values(seed + 2000)
      local names = {}
      for name in pairs(KEEPERS) do names[#names + 1] = name end
      table.sort(names)
      for _, name in ipairs(names) do
        local src = KEEPERS[name]
        local kind = src:find("reduce = function(acc", 1, true) and
          "group" or src:find("initial", 1, true) and "reduce" or "index"
        pair(vals, { { name = name, kind = kind, src = src } }, name ==
          "methods" and "methods" or nil)
      end
    end)
  end

  -- Views that keep values past their call: in a local of the script
  -- (forever), in a reduce state (until a checkpoint settles it), with a
  -- table field read and changed, or read and removed, before the value
  -- is kept. A proxy's bytes are in a ring the indexer writes over from
  -- each slice on (lazy.c, RING): a kept proxy read later is read back
  -- from the log, keeping what was decoded and changed in it.
  local KEPT = {
    upvalue = PRELUDE .. [[
local kept = {}
return { version = 1,
  map = function(v, seq)
    if type(v) ~= "table" then return nil end
    if seq % 3 == 0 then kept[#kept + 1] = v end
    local old = kept[(seq * 7) % #kept + 1]
    local j = seq % 23
    local junk = string.rep("x", 3000 + seq % 50) -- garbage: collections
    return seq % 10, sig(old["f" .. j]) .. sig(old.n) .. sig(old.pad and
      #old.pad) .. (j == 5 and sig(old) or "") .. #junk
  end,
  reduce = function(acc, x) acc = acc or {} acc[#acc + 1] = x return acc end }
]],
    changed = PRELUDE .. [[
local kept = {}
return { version = 1,
  map = function(v, seq)
    if type(v) ~= "table" then return nil end
    if seq % 4 == 1 then
      local t = v.tags
      if type(t) == "table" then t.seen = seq end
      local w = v.f1
      if seq % 8 == 1 and type(v.f2) == "table" then v.f2 = nil end
      kept[#kept + 1] = v
    end
    if #kept == 0 then return nil end
    local old = kept[(seq * 5) % #kept + 1]
    local out = sig(old.tags) .. sig(old.f2) .. sig(old.f1)
    if seq % 9 == 0 then out = out .. sig(old) end
    return seq % 7, out
  end,
  reduce = function(acc, x) acc = acc or {} acc[#acc + 1] = x return acc end }
]],
    state = PRELUDE .. [[
return { version = 1, initial = { list = {}, seen = {} },
  reduce = function(s, v, seq)
    if type(v) ~= "table" then return s end
    if seq % 5 == 2 then s.list[#s.list + 1] = v end
    if #s.list > 40 then table.remove(s.list, 1) end
    local old = s.list[(seq % #s.list) + 1]
    if old then s.seen[#s.seen + 1] = sig(old.f3) .. sig(old.t) end
    return s
  end }
]],
  }

  for seed = 1, SAN and 1 or 2 do
    it("reads values views keep past their slice as a full decode does, " ..
      "after many more slices, checkpoints and collections (seed " ..
      seed .. ")", function()
      local r = G.rng(seed + 3000)
      local vals = {}
      for i = 1, SAN and 700 or 1500 do
        local v = G.widen(r, {})
        v.n = i
        v.t = G.key(r)
        v.pad = string.rep(string.char(97 + i % 26), r.int(100, 1200))
        if r.chance(0.6) then v.tags = { G.key(r), G.key(r) } end
        vals[i] = v
      end
      local names = {}
      for name in pairs(KEPT) do names[#names + 1] = name end
      table.sort(names)
      -- each view in its own pair (a view that changes a value would
      -- change it for the views after it)
      for _, backend in ipairs(H.backends) do
        for _, name in ipairs(names) do
          local kind = name == "state" and "reduce" or "group"
          local dbs, dirs = {}, {}
          dbs.lazy, dirs[1] = H.open(backend, { sync = false })
          dbs.full, dirs[2] = H.open(backend, { sync = false,
            mapper = function(v) return v end })
          for _, db in pairs(dbs) do db:use(name, KEPT[name]) end
          -- in parts, each read (a checkpoint) before the next is appended
          local at, parts = 1, G.rng(seed)
          while at <= #vals do
            local upto = math.min(#vals, at + parts.int(50, 600))
            for _, db in pairs(dbs) do
              db:append({ table.unpack(vals, at, upto) }, { batch = true })
            end
            at = upto + 1
            local a = contents(dbs.lazy, name, kind)
            local b = contents(dbs.full, name, kind)
            if not same(a, b) then
              error(string.format("view %s differs (%s, seed %d, %d " ..
                "values):\nlazy: %s\nfull: %s", name, backend, seed,
                upto, show(a):sub(1, 1500), show(b):sub(1, 1500)), 0)
            end
          end
          for _, db in pairs(dbs) do db:close() end
          for _, dir in pairs(dirs) do H.rm(dir:match("(.*)/db$")) end
        end
      end
    end)
  end

  it("finds fields by names of every length, sharing prefixes, as a full " ..
    "decode does", function()
    -- A proxy scans the encoded names for the one asked (lazy.c,
    -- lazy_index): names of 0 to 32 bytes (32 is no longer a fixstr),
    -- names one byte apart at each position, fields present or not.
    -- Eight reads a script, each a scan (a proxy scans up to eight times
    -- before it decodes whole).
    local r = G.rng(4242)
    local base = "abcdefghijklmnopqrstuvwxyz012345"
    local names = {}
    for len = 0, 32 do names[#names + 1] = base:sub(1, len) end
    for len = 6, 10 do
      local s = base:sub(1, len)
      for at = 1, len do
        names[#names + 1] = s:sub(1, at - 1) .. "!" .. s:sub(at + 1)
      end
    end
    local vals = {}
    for i = 1, SAN and 60 or 200 do
      local v = {}
      for _, name in ipairs(names) do
        if r.chance(0.4) then v[name] = r.int(0, 1000) end
      end
      if r.chance(0.3) then v[base:sub(1, 32)] = nil end
      vals[i] = v
    end
    local reads = {}
    for j, name in ipairs(names) do
      reads[#reads + 1] = string.format("sig(v[%q])", name)
      if j % 8 == 0 or j == #names then
        local body = "if type(v) ~= 'table' then return nil end " ..
          "return " .. table.concat(reads, " .. ',' .. ") .. ", 1"
        local defs = {}
        for kind, src in pairs(scripts(body)) do
          defs[#defs + 1] = { name = "names" .. j .. "_" .. kind,
            kind = kind, src = src }
        end
        table.sort(defs, function(a, b) return a.name < b.name end)
        for _, d in ipairs(defs) do pair(vals, { d }) end
        reads = {}
      end
    end
  end)

  it("decodes whole while views read most fields, lazily again after, " ..
    "with the same results", function()
    -- The indexer judges every few hundred values whether proxies pay
    -- (lazy.c, flume__lazy_choose): reading five fields of six they do
    -- not, so it decodes whole; reading one, it goes back to proxies at
    -- its next try (every 32,768 values). Values kept across the changes,
    -- some proxies and some tables, must read the same.
    local n = SAN and 2000 or 40000
    local defs = {
      { name = "phase", kind = "group", src = "return { version = 1, " ..
        "map = function(v, seq) if seq < " .. (n // 2) .. " then " ..
        "return v.b, v.a + v.c + #v.d + (v.e and 1 or 0) + #v.f end " ..
        "return v.b, 1 end, " ..
        "reduce = function(acc, x) return (acc or 0) + x end }" },
      { name = "keep", kind = "reduce", src = "return { version = 1, " ..
        "initial = {}, reduce = function(s, v, seq) " ..
        "if seq % 997 == 0 then s[#s + 1] = v end " ..
        "if seq % 991 == 0 and #s > 0 then s[#s].seen = s[1].a end " ..
        "return s end }" },
    }
    local dbs = {
      lazy = flume.open(nil, { sync = false }),
      full = flume.open(nil, { sync = false,
        mapper = function(v) return v end }),
    }
    for _, db in pairs(dbs) do
      for _, d in ipairs(defs) do db:use(d.name, d.src) end
      for first = 0, n - 1, 500 do
        local batch = {}
        for i = first, math.min(first + 499, n - 1) do
          batch[#batch + 1] = { a = i, b = "s" .. i % 97, c = i * 0.5,
            d = { i, i + 1 }, e = i % 2 == 0, f = "x" }
        end
        db:append(batch, { batch = true })
      end
    end
    for _, d in ipairs(defs) do
      local a = contents(dbs.lazy, d.name, d.kind)
      local b = contents(dbs.full, d.name, d.kind)
      assert(same(a, b), d.name .. ":\n" .. show(a):sub(1, 1500) ..
        "\n" .. show(b):sub(1, 1500))
    end
    for _, db in pairs(dbs) do db:close() end
  end)

  it("charges the values a view keeps to no view, as before", function()
    -- a view keeping every value under a small cap: the fields it reads
    -- are decoded inside its calls, charged to the runtime
    local src = "return { version = 1, memory = 4 << 20, initial = {}, " ..
      "reduce = function(s, v, seq) s[#s + 1] = v local x = v.big " ..
      "return s end }"
    for _, mapper in ipairs({ false, true }) do
      local db = flume.open(nil, { sync = false, mapper = mapper and
        function(v) return v end or nil })
      db:use("keep", src)
      local big = string.rep("b", 20000)
      for i = 1, 400 do db:append({ big = big .. i, n = i }) end
      local s = db.keep:get({ timeout = 60 })
      assert.equal(400, #s)
      assert.equal(big .. "400", s[400].big)
      db:close()
    end
  end)
end)
