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

    describe("every read", function()
      -- A checkpoint is in the store a moment before `since` says so (the
      -- writer commits it on its own thread; the loop takes in the commit
      -- a turn later), two reads in a row may straddle a commit, and the
      -- samples (one per loop turn at most) need not see every since; a
      -- commit done during a turn is taken in by the loop only after the
      -- next turn's timers, so the sample after an answer may not know it
      -- yet, the one after that does. So an answer taken when the view's
      -- since was s, two samples before one that saw since s', must be
      -- the state of a since in [s, s']: a committed state, never the
      -- indexer's state ahead of the checkpoints. Answers are counts of
      -- values (nil: none).
      local function check_answers(answers, final)
        local wrong = {}
        for i, a in ipairs(answers) do
          local lo = a.since + 1
          local hi = (answers[i + 2] and answers[i + 2].since or final) + 1
          for _, c in ipairs({ a.get, a.now, a.box }) do
            if not (c >= lo and c <= hi) then
              wrong[#wrong + 1] = string.format("since %d (next %d): get " ..
                "%s, now %s, box %s", a.since, hi - 1, a.get, a.now, a.box)
              break
            end
          end
        end
        assert.same({}, wrong)
      end

      it("of a reduce view catching up, methods included, sees its " ..
        "committed state", function()
        local db = ctx.db
        local vals = {}
        for i = 1, 1000 do vals[i] = { i = i } end
        for _ = 1, 40 do db:append(vals, { batch = true }) end
        db:use("n", { version = 1, initial = 0,
          reduce = function(n) return n + 1 end,
          methods = {
            now = { "sync", function(n) return n end },
            box = { "sync", function(n, k) return { n = n, k = k } end },
          } })
        local answers, ahead = {}, 0
        local stop = db.n:on_progress(function(s)
          local a = { since = db.n.since, get = db.n:get{ wait = false },
            now = db.n:now(), box = db.n:box(7).n }
          answers[#answers + 1] = a
          if s.processed > s.since then ahead = ahead + 1 end
        end, 0.001)
        db.n:ready()
        stop()
        check_answers(answers, db.n.since)
        assert.is_true(#answers >= 2)
        assert.is_true(ahead >= 1, "never caught the indexer ahead")
        assert.equal(40000, db.n:now())
      end)

      it("of a group view catching up, methods included, sees its " ..
        "committed state", function()
        local db = ctx.db
        local vals = {}
        for i = 1, 1000 do vals[i] = { i = i } end
        for _ = 1, 40 do db:append(vals, { batch = true }) end
        db:use("g", { version = 1, map = function(v) return "k", 1 end,
          reduce = function(a, n) return (a or 0) + n end,
          methods = { now = { "sync", function(h) return h.get("k") end },
            box = { "sync", function(h) return { n = h.get("k") } end } } })
        local answers = {}
        local stop = db.g:on_progress(function()
          local a = { since = db.g.since,
            get = db.g:get("k", { wait = false }) or 0,
            now = db.g:now() or 0, box = db.g:box().n or 0 }
          answers[#answers + 1] = a
        end, 0.001)
        db.g:ready()
        stop()
        check_answers(answers, db.g.since)
        assert.equal(40000, db.g:now())
      end)
    end)
  end)
end

for _, backend in ipairs(H.backends) do
  describe("the indexer on " .. backend, function()
    local ctx = H.fresh(backend, { ready = false, sync = false })
    before_each(ctx.setup)
    after_each(ctx.teardown)

    -- A slow but legal view: a busy loop of about a millisecond a value.
    local SLOW = "return { version = 1, map = function(v) " ..
      "local x = 0 for i = 1, 150000 do x = x + i end " ..
      "return v.t, x end, reduce = function(a) return (a or 0) + 1 end }"

    it("yields the loop by time: appends are acknowledged while a slow " ..
      "view catches up", function()
      local db = ctx.db
      local vals = {}
      for i = 1, 800 do vals[i] = { t = "a", i = i } end
      db:append(vals, { batch = true })
      db:use("slow", SLOW)
      db:set_ready()
      local acked = {}
      local function issue(k)
        db:append({ t = "b", k = k }, function(err)
          assert.is_nil(err)
          acked[#acked + 1] = db.slow:status().processed
          if k < 3 then issue(k + 1) end
        end)
      end
      issue(1)
      db.slow:ready()
      flume.run()
      assert.equal(3, #acked)
      -- each acknowledged long before the view was through the backlog
      -- (counting by values, before: all 800 in the slice the first
      -- append waited behind)
      for _, processed in ipairs(acked) do
        assert.is_true(processed < 799, "acknowledged at " .. processed)
      end
      assert.equal(800, db.slow:get("a"))
      assert.equal(3, db.slow:get("b"))
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
