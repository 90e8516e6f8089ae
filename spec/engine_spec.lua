-- The view engine's contract at its edges: since advances over skipped
-- values, a failed view keeps its last good checkpoint, every read sees
-- committed state, a wait checks its own target, slices yield by time; on
-- both backends.
local flume = require "flume"
local H = require "helpers.db"

local function collect(iter)
  local out = {}
  for a, b in iter do out[#out + 1] = { a, b } end
  return out
end

for _, backend in ipairs(H.backends) do
  describe("engine on " .. backend, function()
    local ctx = H.fresh(backend)
    before_each(ctx.setup)
    after_each(ctx.teardown)

    describe("values a view skips", function()
      it("still advance a group view whose map returns nil", function()
        local db = ctx.db
        db:use("g", { version = 1,
          map = function(v) if v.t then return v.t, 1 end end,
          reduce = function(a, n) return (a or 0) + n end })
        db:append({ t = "a" })
        db:append({ x = 1 })
        assert.equal(1, db.g:get("a", { timeout = 2 }))
        assert.equal(1, db.g.since)
      end)

      it("past a slice of them, for every view", function()
        local db = ctx.db
        db:use("g", { version = 1,
          map = function(v) if v.t then return v.t, 1 end end,
          reduce = function(a, n) return (a or 0) + n end })
        db:use("i", { version = 1,
          map = function(v) if v.t then return v.t end end })
        db:use("r", { version = 1, initial = 0,
          map = function(v) if v.t then return v end end,
          reduce = function(n) return n + 1 end })
        db:use("all", { version = 1, initial = 0,
          reduce = function(n) return n + 1 end })
        local skipped = {}
        for i = 1, 5000 do skipped[i] = { x = i } end
        db:append({ t = "a" })
        db:append(skipped, { batch = true })
        assert.equal(5001, db.all:get{ timeout = 5 })
        assert.equal(1, db.g:get("a", { timeout = 5 }))
        assert.equal(1, #db.i:get("a", { timeout = 5 }))
        assert.equal(1, db.r:get{ timeout = 5 })
        for _, name in ipairs { "g", "i", "r", "all" } do
          assert.equal(5000, db[name].since, name)
        end
        -- and a view catching up over them from its start
        db:use("late", { version = 1,
          map = function(v) if v.t then return v.t, 1 end end,
          reduce = function(a, n) return (a or 0) + n end })
        assert.same({ { "a", 1 } }, collect(db.late:read{ timeout = 5 }))
        assert.equal(5000, db.late.since)
      end)

      it("advance a list-of-keys index view mapping to an empty list",
        function()
        local db = ctx.db
        db:use("i", { version = 1, map = function(v) return v.tags end })
        db:append({ tags = { "a" } })
        db:append({ tags = {} })
        db:append({ })
        assert.equal(1, #db.i:get("a", { timeout = 2 }))
        assert.equal(2, db.i.since)
      end)
    end)
  end)
end

describe("a failed view", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  -- Opens the database, appends `values` before the view (so that one
  -- slice sees them all), uses `script`, which must fail; closes.
  local function fail_once(values, script, read)
    local db = flume.open(dir .. "/db")
    db:append(values, { batch = true })
    db:use("v", script)
    H.raises(function() read(db.v) end, "^flume: EVIEW: .*boom")
    db:close()
  end

  -- Reopens with the fixed script, same version; returns read's result.
  local function fixed(script, read)
    local db = flume.open(dir .. "/db")
    db:use("v", script)
    local got = read(db.v)
    local since = db.v.since
    db:close()
    return got, since
  end

  local abc = { { k = "a" }, { k = "a" }, { k = "a", bad = true } }

  it("keeps its last good checkpoint: a reduce view fixed without a " ..
    "version bump counts every value once", function()
    local function script(bad)
      return "return { version = 1, initial = { n = 0 }, " ..
        "reduce = function(s, v) s.n = s.n + 1 " ..
        (bad and "if v.bad then error('boom') end " or "") ..
        "return s end }"
    end
    local read = function(v) return v:get().n end
    fail_once(abc, script(true), read)
    local n, since = fixed(script(false), read)
    assert.equal(3, n)
    assert.equal(2, since)
  end)

  it("and so does one whose reduce does not change its state in place",
    function()
    local function script(bad)
      return "return { version = 1, initial = 0, " ..
        "reduce = function(n, v) " ..
        (bad and "if v.bad then error('boom') end " or "") ..
        "return n + 1 end }"
    end
    fail_once(abc, script(true), function(v) return v:get() end)
    assert.equal(3, (fixed(script(false), function(v) return v:get() end)))
  end)

  it("a group view: nothing of the failing value's accumulator", function()
    local function script(bad)
      return "return { version = 1, map = function(v) return v.k, v end, " ..
        "reduce = function(acc, v) acc = acc or { n = 0 } acc.n = acc.n + 1 " ..
        (bad and "if v.bad then error('boom') end " or "") ..
        "return acc end }"
    end
    local read = function(v) return v:get("a").n end
    fail_once(abc, script(true), read)
    assert.equal(3, (fixed(script(false), read)))
  end)

  it("an index view: none of the failing value's keys", function()
    local function script(bad)
      return "return { version = 1, map = function(v) " ..
        (bad and "if v.bad then return { 'x', function() end } end "
          or "if v.bad then return nil end ") ..
        "return { 'x' } end }"
    end
    local db = flume.open(dir .. "/db")
    db:append(abc, { batch = true })
    db:use("v", script(true))
    H.raises(function() db.v:get("x") end, "^flume: EVIEW: .*bad key")
    db:close()
    local got = fixed(script(false), function(v) return v:get("x") end)
    assert.equal(2, #got)
  end)
end)
