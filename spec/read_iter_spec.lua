-- View reads that are not live run a C iterator (flume.core's view_iter,
-- runtime/lua/views.c): one entry per call from a chunk read ahead. It
-- must give exactly what the Lua path it replaced gives (flume.view's
-- lua_reads switch keeps that one reachable) and what a model of the
-- view says, on random views, ranges and options, and it must hold up
-- when the loop body does hostile things: drops, rebuilds or replaces the
-- view, closes the database, breaks out, yields or raises.
--
-- The seed is printed; FLUME_SEED=N replays one.
local flume = require "flume"
local core = require "flume.core"
local view_mod = require "flume.view"
local H = require "helpers.db"

local key_encode = core.key_encode

--- Exact equality of two decoded values (integer vs float, tables).
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then return math.type(a) == math.type(b) and a == b end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function show(v)
  if type(v) ~= "table" then
    return type(v) == "string" and string.format("%q", v) or tostring(v)
  end
  local parts = {}
  for i = 1, #v do parts[i] = show(v[i]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- Everything a read hands out, as a list of { key, seq, value } (group:
-- { key, acc }), and the error that ended it (nil if none).
local function collect(view, opts, lua_path, body)
  local saved = view_mod.lua_reads
  view_mod.lua_reads = lua_path
  local got, n = {}, 0
  local ok, err = pcall(function()
    for a, b, c in view:read(opts) do
      n = n + 1
      got[n] = { a, b, c }
      if body and body(n) == "break" then break end
    end
  end)
  view_mod.lua_reads = saved
  return got, (not ok) and err or nil
end

local function same_lists(a, b)
  if #a ~= #b then return false, "lengths " .. #a .. " and " .. #b end
  for i = 1, #a do
    for j = 1, 3 do
      if not same(a[i][j], b[i][j]) then
        return false, string.format("entry %d, part %d: %s vs %s", i, j,
          show(a[i][j]), show(b[i][j]))
      end
    end
  end
  return true
end

-- Keys of every kind, composite ones too, and bounds that are no key of
-- the view (between keys, below and above them all).
local KEYS = { false, true, -3, 0, 1, 2.5, 7, "", "a", "ab", "b", "zz",
  { "a" }, { "a", 1 }, { "b", false }, {} }
local BOUNDS = { false, true, -100, -3, 0, 0.5, 1, 2.5, 100, "", "a", "aa",
  "ab", "b", "c", "zzz", { "a" }, { "a", 0 }, { "a", 1 }, { "z" }, {} }

--- The model: an index's entries sorted by (key encoding, seq), a group's
-- keys by encoding with their counts.
local function model_entries(values, kind)
  local entries = {}
  if kind == "index" then
    for seq, v in pairs(values) do
      local seen = {} -- a key twice in one value is one entry
      for _, k in ipairs(v.keys) do
        local enc = key_encode(k)
        if not seen[enc] then
          seen[enc] = true
          entries[#entries + 1] = { enc = enc, key = k, seq = seq, value = v }
        end
      end
    end
    table.sort(entries, function(x, y)
      if x.enc ~= y.enc then return x.enc < y.enc end
      return x.seq < y.seq
    end)
  else
    local count, key_of = {}, {}
    for _, v in pairs(values) do
      local k = v.keys[1]
      if k ~= nil then
        local e = key_encode(k)
        count[e], key_of[e] = (count[e] or 0) + 1, k
      end
    end
    for e, c in pairs(count) do
      entries[#entries + 1] = { enc = e, key = key_of[e], acc = c }
    end
    table.sort(entries, function(x, y) return x.enc < y.enc end)
  end
  return entries
end

local function model_read(entries, kind, o)
  local lo, lo_incl = o.gte, true
  if lo == nil and o.gt ~= nil then lo, lo_incl = o.gt, false end
  local hi, hi_incl = o.lte, true
  if hi == nil and o.lt ~= nil then hi, hi_incl = o.lt, false end
  lo = lo ~= nil and key_encode(lo) or nil
  hi = hi ~= nil and key_encode(hi) or nil
  local out = {}
  for _, e in ipairs(entries) do
    local inside = (lo == nil or e.enc > lo or (lo_incl and e.enc == lo)) and
      (hi == nil or e.enc < hi or (hi_incl and e.enc == hi))
    if inside then
      out[#out + 1] = kind == "index" and { e.key, e.seq, e.value } or
        { e.key, e.acc }
    end
  end
  if o.reverse then
    for i = 1, #out // 2 do out[i], out[#out + 1 - i] = out[#out + 1 - i], out[i] end
  end
  local limit = o.limit or math.huge
  while #out > limit do out[#out] = nil end
  return out
end

local function random_opts(r)
  local o = {}
  local function bound() return BOUNDS[r(#BOUNDS)] end
  local lower, upper = r(4), r(4)
  if lower == 1 then o.gt = bound() elseif lower == 2 then o.gte = bound()
  elseif lower == 3 then o.gt, o.gte = bound(), bound() end
  if upper == 1 then o.lt = bound() elseif upper == 2 then o.lte = bound()
  elseif upper == 3 then o.lt, o.lte = bound(), bound() end
  if r(2) == 1 then o.reverse = true end
  local l = r(6)
  if l == 1 then o.limit = 0 elseif l == 2 then o.limit = 1
  elseif l == 3 then o.limit = r(600) end
  return o
end

local INDEX = {
  version = 1,
  map = function(v) return v.keys end,
}
local GROUP = {
  version = 1,
  map = function(v) return v.keys[1], 1 end,
  reduce = function(acc, n) return (acc or 0) + n end,
}

--- Appends `count` random values: each { i, keys = 0-3 keys, pad }.
local function fill(db, r, values, count)
  local batch = {}
  for i = 1, count do
    local keys = {}
    for j = 1, r(4) - 1 do keys[j] = KEYS[r(#KEYS)] end
    batch[i] = { i = i, keys = keys, pad = string.rep("x", r(40)),
      f = r(2) == 1 and 0.5 or 3 }
  end
  local last = db:append(batch, { batch = true })
  for i = 1, count do values[last - count + i] = batch[i] end
end

local seed = tonumber(os.getenv("FLUME_SEED")) or os.time()
print("read_iter_spec seed " .. seed .. " (FLUME_SEED=" .. seed ..
  " replays it)")

for _, backend in ipairs(H.backends) do
  describe("a view read's C iterator (" .. backend .. ")", function()
    local ctx = H.fresh(backend)
    before_each(ctx.setup)
    after_each(function()
      view_mod.lua_reads = false
      ctx.teardown()
    end)

    local function setup(r, count)
      local db, values = ctx.db, {}
      db:use("ix", INDEX)
      db:use("g", GROUP)
      fill(db, r, values, count)
      db.ix:ready()
      db.g:ready()
      return db, values
    end

    it("gives what the Lua path and the model give, on random reads",
      function()
        local rng = math.random
        math.randomseed(seed)
        local function r(n) return rng(n) end
        local db, values = setup(r, 700)
        -- more than one chunk of entries (256 a chunk), more log values
        fill(db, r, values, 300)
        db.ix:ready()
        db.g:ready()
        for _, kind in ipairs { "index", "group" } do
          local view = kind == "index" and db.ix or db.g
          local entries = model_entries(values, kind)
          for round = 1, 60 do
            local o = random_opts(r)
            local want = model_read(entries, kind, o)
            local got, err = collect(view, o, false)
            local old, old_err = collect(view, o, true)
            local where = string.format("seed %d, %s read %d %s", seed,
              kind, round, show { o.gt, o.gte, o.lt, o.lte, o.reverse,
                o.limit })
            assert(err == nil and old_err == nil, where .. ": " ..
              tostring(err or old_err))
            local ok, why = same_lists(got, want)
            assert(ok, where .. " (against the model): " .. tostring(why))
            ok, why = same_lists(got, old)
            assert(ok, where .. " (against the Lua path): " .. tostring(why))
          end
        end
      end)

    it("gives the model's entries when reads overlap and hand their " ..
      "buffers on (a finished read's chunk is the next one's)", function()
        local rng = math.random
        math.randomseed(seed + 1)
        local function r(n) return rng(n) end
        local db, values = setup(r, 600)
        -- some values far bigger than the rest: chunks of every size
        local big = {}
        for seq = db.since - 49, db.since, 7 do
          big[#big + 1] = { i = seq, keys = values[seq].keys,
            pad = string.rep("y", 30000 + seq), f = 1 }
        end
        db:append(big, { batch = true })
        for i, v in ipairs(big) do values[db.since - #big + i] = v end
        db.ix:ready()
        db.g:ready()
        local models = { index = model_entries(values, "index"),
          group = model_entries(values, "group") }
        -- Up to four reads open at once, stepped in a random order; each
        -- one that ends (or is dropped half way) makes room for a new one.
        local open, started, finished = {}, 0, 0
        local function start()
          started = started + 1
          local kind = r(2) == 1 and "index" or "group"
          local o = random_opts(r)
          local view = kind == "index" and db.ix or db.g
          local f = view:read(o)
          open[#open + 1] = { f = f, got = {}, kind = kind, o = o,
            drop_at = r(5) == 1 and r(300) or nil, n = started }
        end
        while started < 80 or #open > 0 do
          while started < 80 and #open < 4 do start() end
          local i = r(#open)
          local rd = open[i]
          local a, b, c = rd.f()
          local where = string.format("seed %d, read %d (%s %s)", seed + 1,
            rd.n, rd.kind, show { rd.o.gt, rd.o.gte, rd.o.lt, rd.o.lte,
              rd.o.reverse, rd.o.limit })
          if a == nil and b == nil then
            local want = model_read(models[rd.kind], rd.kind, rd.o)
            local ok, why = same_lists(rd.got, want)
            assert(ok, where .. ": " .. tostring(why))
            table.remove(open, i)
            finished = finished + 1
          else
            rd.got[#rd.got + 1] = { a, b, c }
            if rd.drop_at and #rd.got >= rd.drop_at then
              table.remove(open, i) -- abandoned: the collector frees it
              if r(2) == 1 then collectgarbage() end
            end
          end
        end
        assert(finished > 40, "only " .. finished .. " reads ran to the end")
      end)

    it("raises for a bound that is no key, as the Lua path does", function()
      local db = setup(function(n) return (n + 1) // 2 end, 10)
      for _, bad in ipairs { function() end, 0 / 0, { "a", 0 / 0 },
        coroutine.create(function() end), { "a", function() end } } do
        for _, k in ipairs { "gt", "gte", "lt", "lte" } do
          local _, err = collect(db.ix, { [k] = bad }, false)
          local _, old_err = collect(db.ix, { [k] = bad }, true)
          assert.is_string(err, k .. " = " .. tostring(bad))
          assert.equal(old_err:match("flume: .*"), err:match("flume: .*"))
        end
      end
    end)

    it("gives nothing for a range that is empty or upside down", function()
      local db = setup(function(n) return n end, 50)
      for _, o in ipairs { { gt = "b", lt = "a" }, { gt = "a", lt = "a" },
        { gte = "a", lt = "a" }, { gt = 7, lte = 7 }, { gt = { "zzz" } },
        { lt = false }, { limit = 0 }, { gte = "b", lte = "a",
          reverse = true } } do
        local got = collect(db.ix, o, false)
        assert.equal(0, #got)
      end
    end)

    it("ends with ENOTFOUND when the view is dropped during the loop, as " ..
      "the Lua path does", function()
        local rng = math.random
        math.randomseed(seed + 1)
        local db = setup(function(n) return rng(n) end, 800)
        local function drop_at(n)
          if n == 3 then db:drop("ix") end
        end
        local got, err = collect(db.ix, {}, false, drop_at)
        assert.matches("^flume: ENOTFOUND: .*no view named 'ix'", err)
        db:use("ix", INDEX)
        db.ix:ready()
        local old, old_err = collect(db.ix, {}, true, drop_at)
        assert.equal(old_err, err)
        assert.is_true(same_lists(got, old))
        assert.is_true(#got >= 3 and #got <= 256)
      end)

    it("says so when the view is replaced by one of another kind", function()
      local rng = math.random
      math.randomseed(seed + 2)
      local db = setup(function(n) return rng(n) end, 800)
      local got, err = collect(db.ix, {}, false, function(n)
        if n == 1 then
          db:drop("ix")
          db:use("ix", GROUP)
          db.ix:ready()
        end
      end)
      assert.matches("^flume: ENOTFOUND: .*view 'ix' was replaced", err)
      assert.is_true(#got >= 1 and #got <= 256)
    end)

    it("reads on at its own since when the view is rebuilt during the loop",
      function()
        local rng = math.random
        math.randomseed(seed + 3)
        local db, values = setup(function(n) return rng(n) end, 900)
        local want = model_read(model_entries(values, "index"), "index", {})
        local function rebuild_at(n)
          if n == 2 then
            db:rebuild()
            db.ix:ready()
          end
        end
        local got, err = collect(db.ix, {}, false, rebuild_at)
        local old, old_err = collect(db.ix, {}, true, rebuild_at)
        assert.is_nil(err)
        assert.is_nil(old_err)
        -- the rebuilt view has the same entries: the read sees them all
        assert.is_true(same_lists(got, want))
        assert.is_true(same_lists(got, old))
      end)

    it("ends with ECLOSED when the database closes during the loop, as " ..
      "the Lua path does", function()
        local rng = math.random
        math.randomseed(seed + 4)
        local db = setup(function(n) return rng(n) end, 800)
        local got, err = collect(db.ix, {}, false, function(n)
          if n == 5 then db:close() end
        end)
        assert.matches("^flume: ECLOSED", err)
        assert.is_true(#got >= 5 and #got <= 256)
        if ctx.dir then -- what it read is there to read again
          local again <close> = flume.open(ctx.dir)
          again:use("ix", INDEX)
          again.ix:ready()
          local all, err2 = collect(again.ix, {}, false)
          assert.is_nil(err2)
          assert.is_true(same_lists(got, { table.unpack(all, 1, #got) }))
        end
      end)

    it("leaves nothing behind when the loop breaks early", function()
      local rng = math.random
      math.randomseed(seed + 5)
      local db, values = setup(function(n) return rng(n) end, 600)
      local want = model_read(model_entries(values, "index"), "index", {})
      for stop = 1, 40 do
        local got = collect(db.ix, {}, false, function(n)
          if n == stop then return "break" end
        end)
        assert.equal(stop, #got)
        assert.is_true(same_lists(got, { table.unpack(want, 1, stop) }))
      end
      -- iterators abandoned half way, collected; and one called after its end
      for _ = 1, 50 do
        local it = db.ix:read {}
        it()
      end
      collectgarbage()
      local it = db.g:read { limit = 2 }
      assert.is_not_nil(it())
      assert.is_not_nil(it())
      assert.is_nil(it())
      assert.is_nil(it())
      db:close()
      assert.is_nil(it()) -- over before the close: still over
      ctx.db = nil
    end)

    it("sees the view at one since while the loop body yields and appends",
      function()
        local rng = math.random
        math.randomseed(seed + 6)
        local db, values = setup(function(n) return rng(n) end, 700)
        local want = model_read(model_entries(values, "index"), "index", {})
        local got, err, done
        flume.spawn(function()
          got, err = collect(db.ix, {}, false, function(n)
            if n % 50 == 0 then
              -- a sync append inside a coroutine yields to the loop, and
              -- the view indexes it while the read is under way
              db:append({ i = -n, keys = { "a", "b", 0 }, pad = "" })
            end
          end)
          done = true
        end)
        flume.run()
        assert.is_true(done)
        assert.is_nil(err)
        -- what the view held when the read began, nothing appended after
        assert.is_true(same_lists(got, want))
      end)

    it("goes on after a loop body that raised", function()
      local rng = math.random
      math.randomseed(seed + 7)
      local db, values = setup(function(n) return rng(n) end, 600)
      local want = model_read(model_entries(values, "index"), "index", {})
      local it = db.ix:read {}
      local got = {}
      for round = 1, 3 do
        local ok, err = pcall(function()
          for k, s, v in it do
            got[#got + 1] = { k, s, v }
            if #got % 100 == 0 then error("body " .. round) end
          end
        end)
        assert.is_false(ok)
        assert.matches("body " .. round, err)
      end
      for k, s, v in it do got[#got + 1] = { k, s, v } end
      assert.is_true(same_lists(got, want))
    end)

    it("hands out the bytes of another codec's values to its decode",
      function()
        ctx.db:close()
        ctx.db = nil
        local db
        if ctx.dir then
          H.rm(ctx.dir:match("(.*)/db$"))
          db, ctx.dir = H.open(backend, { codec = "raw" })
        else
          db = flume.open(nil, { codec = "raw" })
        end
        ctx.db = db
        db:use("ix", { version = 1, map = function(v) return v:sub(1, 1) end })
        db:use("m", { version = 1, map = function(v) return #v, v end,
          reduce = function(acc, v) return (acc or "") .. v end })
        local batch = {}
        for i = 1, 300 do batch[i] = string.char(97 + i % 5) .. i end
        db:append(batch, { batch = true })
        local got = collect(db.ix, { gte = "b", lte = "c" }, false)
        local old = collect(db.ix, { gte = "b", lte = "c" }, true)
        assert.equal(120, #got)
        assert.is_true(same_lists(got, old))
        for _, e in ipairs(got) do assert.equal(batch[e[2] + 1], e[3]) end
        got = collect(db.m, { reverse = true }, false)
        old = collect(db.m, { reverse = true }, true)
        assert.is_true(same_lists(got, old))
        assert.equal(2, got[#got][1]) -- "b1", the shortest
      end)
  end)
end

describe("a view read's C iterator with a mapper", function()
  it("hands each value to the mapper, as the Lua path does", function()
    local db = flume.open(nil, { mapper = function(v, seq)
      return { n = v.n, seq = seq, twice = v.n * 2 }
    end })
    db:use("ix", { version = 1, map = function(v) return v.n % 3 end })
    local batch = {}
    for i = 1, 400 do batch[i] = { n = i } end
    db:append(batch, { batch = true })
    local got = collect(db.ix, { gte = 1 }, false)
    local old = collect(db.ix, { gte = 1 }, true)
    assert.equal(267, #got)
    assert.is_true(same_lists(got, old))
    for _, e in ipairs(got) do
      assert.equal(e[2], e[3].seq)
      assert.equal(e[3].n * 2, e[3].twice)
    end
    db:close()
  end)
end)
