-- The indexer's read-ahead (runtime/views/ahead.c): while the views run
-- on a slice of the log, a thread reads the next values. Over logs long
-- enough for it: views of each kind agree with a model, a view replaced
-- in the middle of its rebuild starts again right, a damaged value fails
-- the views at its own seq, and a close in the middle of a rebuild leaves
-- nothing behind. FLUME_SEED replays a run.
local flume = require "flume"
local H = require "helpers.db"
local G = require "helpers.gen"

local N = 6000 -- values: several of the read-ahead's chunks (1024)

local COUNT = [[return { version = 1,
  map = function(v) return v.author, 1 end,
  reduce = function(n, one) return (n or 0) + one end }]]
local POSITIVE = [[return { version = 2,
  map = function(v) if v.n > 0 then return v.author, v.n end end,
  reduce = function(s, n) return (s or 0) + n end }]]
-- COUNT at some 300 us a value (its loop under the instruction budget's
-- hook): 18,000 take longer than a close waits (2 s), here 2.7 times.
local SLOW = [[return { version = 1,
  map = function(v)
    local x = 0
    for i = 1, 20000 do x = x + i end
    return v.author, 1
  end,
  reduce = function(n, one) return (n or 0) + one end }]]
local TOTAL = [[return { version = 1, initial = 0,
  reduce = function(s, v) return s + v.n end }]]
local BY_AUTHOR = [[return { version = 1,
  map = function(v) return v.author end }]]

local seed = tonumber(os.getenv("FLUME_SEED")) or os.time()

--- N random values, and what the views above make of them.
local function values(r)
  local vals = {}
  local m = { count = {}, positive = {}, total = 0, by = {} }
  for i = 1, N do
    local v = { author = "a" .. r.int(1, 40), n = r.int(-1000, 1000),
      pad = ("x"):rep(r.int(0, 300)) }
    vals[i] = v
    m.count[v.author] = (m.count[v.author] or 0) + 1
    if v.n > 0 then m.positive[v.author] = (m.positive[v.author] or 0) + v.n end
    m.total = m.total + v.n
    local list = m.by[v.author] or {}
    list[#list + 1] = i - 1
    m.by[v.author] = list
  end
  return vals, m
end

local function group(view)
  local t = {}
  for k, a in view:read() do t[k] = a end
  return t
end

describe("the read-ahead", function()
  local dir, db
  before_each(function() dir = H.tmpdir() end)
  after_each(function()
    if db and not db:closed() then db:close() end
    db = nil
    H.rm(dir)
  end)

  it("rebuilds views of every kind as the model says", function()
    local r = G.rng(seed)
    local vals, m = values(r)
    db = flume.open(dir .. "/db")
    db:append(vals, { batch = true })
    local before = db._c:ahead_taken()
    db:use("count", COUNT)
    db:use("total", TOTAL)
    db:use("by_author", BY_AUTHOR)
    local why = "FLUME_SEED=" .. seed
    assert.same(m.count, group(db.count), why)
    assert.equal(m.total, db.total:get(), why)
    local by = {}
    for k, seq, v in db.by_author:read() do
      local list = by[k] or {}
      list[#list + 1] = seq
      by[k] = list
      assert.equal(k, v.author, why)
    end
    assert.same(m.by, by, why)
    -- the rebuild took values read ahead (else this tests nothing)
    assert.is_true(db._c:ahead_taken() > before, why)
  end)

  it("starts a view replaced in the middle of its rebuild again", function()
    local r = G.rng(seed + 1)
    local vals, m = values(r)
    db = flume.open(dir .. "/db")
    db:append(vals, { batch = true })
    db:append(vals, { batch = true })
    db:use("count", COUNT)
    db:use("count", POSITIVE) -- replaces it: from seq 0 again
    local want = {}
    for k, s in pairs(m.positive) do want[k] = 2 * s end
    assert.same(want, group(db.count), "FLUME_SEED=" .. seed)
  end)

  it("fails the views at a damaged value's own seq", function()
    local r = G.rng(seed + 2)
    local vals = values(r)
    local at = 4321
    vals[at + 1].pad = "DAMAGEME" .. ("z"):rep(40)
    db = flume.open(dir .. "/db")
    db:append(vals, { batch = true })
    db:close()
    local f = assert(io.open(dir .. "/db/data.mdb", "rb"))
    local bytes = f:read("a")
    f:close()
    -- LMDB copies pages on write: damage every copy
    bytes = bytes:gsub("DAMAGEME", "DAMAGEMF")
    f = assert(io.open(dir .. "/db/data.mdb", "wb"))
    f:write(bytes)
    f:close()
    db = flume.open(dir .. "/db")
    db:use("count", COUNT)
    local ok, err = pcall(group, db.count)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("EVIEW", 1, true), tostring(err))
    assert.truthy(tostring(err):find("failed at seq " .. at .. ":", 1, true),
      tostring(err))
    assert.truthy(tostring(err):find("the log cannot be read", 1, true),
      tostring(err))
  end)

  it("closes cleanly in the middle of a rebuild, which goes on later",
    function()
      local r = G.rng(seed + 3)
      local vals, m = values(r)
      db = flume.open(dir .. "/db")
      for _ = 1, 3 do db:append(vals, { batch = true }) end
      db:use("slow", SLOW)
      db:close() -- the views catch up for up to 2 s, then it closes
      db = flume.open(dir .. "/db")
      db:use("slow", SLOW)
      -- the close cut the rebuild (else this tests nothing)
      assert.is_true(db.slow.since < 3 * N - 1, tostring(db.slow.since))
      local want = {}
      for k, c in pairs(m.count) do want[k] = 3 * c end
      assert.same(want, group(db.slow), "FLUME_SEED=" .. seed)
    end)
end)
