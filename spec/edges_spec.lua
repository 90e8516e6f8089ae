-- Edges of the API (issue 8, defects 4, 5, 6 and 10): bounds at the int64
-- limits, numbers that are not what they seem, live streams that must end,
-- and the async forms of view reads.
local flume = require "flume"
local H = require "helpers.db"

local maxint, minint = math.maxinteger, math.mininteger

--- Runs fn with a budget of Lua instructions: a loop that spins instead of
--- waiting (in C, where nothing is counted) raises instead of hanging.
local function no_spin(fn)
  debug.sethook(function() error("spins: over the instruction budget", 2) end,
    "", 5e7)
  local ok, err = pcall(fn)
  debug.sethook()
  if not ok then error(err, 0) end
end

for _, backend in ipairs(H.backends) do
  describe("edges on " .. backend, function()
    local ctx = H.fresh(backend)
    before_each(ctx.setup)
    after_each(ctx.teardown)

    describe("live streams", function()
      -- defect 4: a negative gte on an empty log waited for a seq (-1)
      -- that is always reached, so it never yielded.
      for _, opts in ipairs {
        { live = true, gte = -1 }, { live = true, gt = -5 },
        { live = true, gte = minint }, { live = true, gt = minint },
      } do
        it("waits, not spins, from a negative bound on an empty log (" ..
          (opts.gte and "gte" or "gt") .. " = " ..
          tostring(opts.gte or opts.gt) .. ")", function()
          local db, got = ctx.db, {}
          db:append("first", function() end)
          no_spin(function()
            for seq, v in db:stream(opts) do
              got[#got + 1] = { seq, v }
              if seq == 1 then break end
              db:append("second", function() end)
            end
          end)
          assert.same({ { 0, "first" }, { 1, "second" } }, got)
        end)
      end

      -- defect 5: the consumer closing the database in the loop body made
      -- the next step raise ECLOSED.
      it("ends cleanly when the loop body closes the database", function()
        local db, got = ctx.db, {}
        db:append("a"); db:append("b"); db:append("c")
        for seq in db:stream{ live = true } do
          got[#got + 1] = seq
          if seq == 1 then db:close() end
        end
        assert.same({ 0, 1 }, got)
      end)

      it("ends cleanly when a spawned loop body closes the database",
        function()
          local db, got, finished = ctx.db, {}, false
          db:append("a")
          flume.spawn(function()
            for seq in db:stream{ live = true } do
              got[#got + 1] = seq
              if seq == 0 then db:append("b") end
              if seq == 1 then db:close() end
            end
            finished = true
          end)
          flume.run()
          assert.is_true(finished)
          assert.same({ 0, 1 }, got)
        end)

      it("ends a live view read cleanly when its body closes the database",
        function()
          local db = ctx.db
          db:use("ix", { version = 1, map = function(v) return v.k end })
          db:use("g", { version = 1, map = function(v) return v.k, 1 end,
            reduce = function(a, n) return (a or 0) + n end })
          db:append({ k = "a" }); db:append({ k = "b" })
          local got = {}
          for k in db.g:read{ live = true } do
            got[#got + 1] = k
            db:close()
          end
          assert.same({ "a" }, got)
        end)

      it("ends a live index read cleanly when its body closes the database",
        function()
          local db = ctx.db
          db:use("ix", { version = 1, map = function(v) return v.k end })
          db:append({ k = "a" }); db:append({ k = "b" })
          local got = {}
          for k in db.ix:read{ live = true } do
            got[#got + 1] = k
            db:close()
          end
          assert.same({ "a" }, got)
        end)
    end)

    -- defect 6: a view's get and read had no async form.
    describe("async view reads", function()
      local function setup(db)
        db:use("ix", { version = 1, map = function(v) return v.k end })
        db:use("g", { version = 1, map = function(v) return v.k, 1 end,
          reduce = function(a, n) return (a or 0) + n end })
        db:use("t", { version = 1, initial = 0,
          reduce = function(a) return a + 1 end })
        db:append({ k = "a" }); db:append({ k = "b" }); db:append({ k = "a" })
      end

      --- Calls `start(cb)`, checks cb is not called before start returns,
      --- runs the loop and returns what cb got.
      local function async(start)
        local calls, returned = {}, false
        start(function(err, res)
          assert.is_true(returned, "called back before the call returned")
          calls[#calls + 1] = { err = err, res = res }
        end)
        returned = true
        flume.run()
        assert.equal(1, #calls, "called back " .. #calls .. " times")
        return calls[1].err, calls[1].res
      end

      it("gets a reduce view's state: get(cb) and get(opts, cb)", function()
        local db = ctx.db
        setup(db)
        assert.same({ nil, 3 }, { async(function(cb) db.t:get(cb) end) })
        assert.same({ nil, 3 },
          { async(function(cb) db.t:get({ timeout = 5 }, cb) end) })
        assert.same({ nil, 3 },
          { async(function(cb) db.t:get({ wait = false }, cb) end) })
      end)

      it("gets a group key: get(key, cb) and get(key, opts, cb)", function()
        local db = ctx.db
        setup(db)
        assert.same({ nil, 2 }, { async(function(cb) db.g:get("a", cb) end) })
        assert.same({ nil, 1 },
          { async(function(cb) db.g:get("b", { timeout = 5 }, cb) end) })
        assert.same({}, { async(function(cb) db.g:get("zz", {}, cb) end) })
      end)

      it("gets an index key's values: get(key, cb), get(key, opts, cb)",
        function()
          local db = ctx.db
          setup(db)
          assert.same({ nil, { { k = "a" }, { k = "a" } } },
            { async(function(cb) db.ix:get("a", cb) end) })
          assert.same({ nil, { { k = "b" } } },
            { async(function(cb) db.ix:get("b", { wait = true }, cb) end) })
        end)

      it("waits for appends made before the call (since-gating)", function()
        local db = ctx.db
        setup(db)
        db:append({ k = "a" })
        db:append({ k = "a" })
        assert.same({ nil, 4 }, { async(function(cb) db.g:get("a", cb) end) })
        assert.same({ nil, 5 }, { async(function(cb) db.t:get(cb) end) })
      end)

      it("reads a range: read(opts, cb) gives the list of entries", function()
        local db = ctx.db
        setup(db)
        assert.same({ nil, { { key = "a", value = 2 }, { key = "b", value = 1 } } },
          { async(function(cb) db.g:read(cb) end) })
        assert.same({ nil, { { key = "b", value = 1 } } },
          { async(function(cb) db.g:read({ gt = "a" }, cb) end) })
        assert.same({ nil, {
          { key = "b", seq = 1, value = { k = "b" } },
          { key = "a", seq = 2, value = { k = "a" } },
        } }, { async(function(cb)
          db.ix:read({ reverse = true, limit = 2 }, cb)
        end) })
        assert.same({ nil, {} },
          { async(function(cb) db.ix:read({ gt = "z" }, cb) end) })
      end)

      it("delivers a live read in batches until stopped", function()
        local db = ctx.db
        setup(db)
        local batches, stop = {}, nil
        stop = db.ix:read({ live = true, gte = "a" }, function(err, list)
          assert.is_nil(err)
          local seqs = {}
          for i, e in ipairs(list) do seqs[i] = e.seq end
          batches[#batches + 1] = seqs
          if #batches == 1 then
            db:append({ k = "c" }, function() end)
            db:append({ k = "a" }, function() end)
          elseif seqs[#seqs] == 4 then
            stop()
          end
        end)
        assert.is_function(stop)
        flume.run()
        local all = {}
        for _, b in ipairs(batches) do
          for _, seq in ipairs(b) do all[#all + 1] = seq end
        end
        assert.same({ 0, 2, 1 }, batches[1])
        table.sort(all)
        assert.same({ 0, 1, 2, 3, 4 }, all)
      end)

      it("ends a live async read when the database closes", function()
        local db = ctx.db
        setup(db)
        local n = 0
        db.g:read({ live = true }, function(err)
          assert.is_nil(err)
          n = n + 1
          db:close(function() end)
        end)
        flume.run()
        assert.equal(1, n)
      end)

      it("streams the log: stream(opts, cb) gives the list of entries",
        function()
          local db = ctx.db
          setup(db)
          assert.same({ nil, { { seq = 1, value = { k = "b" } },
            { seq = 2, value = { k = "a" } } } },
            { async(function(cb) db:stream({ gt = 0 }, cb) end) })
          assert.same({ nil, { { seq = 2, value = { k = "a" } } } },
            { async(function(cb) db:stream({ reverse = true, limit = 1 }, cb)
            end) })
          assert.same({ nil, {} },
            { async(function(cb) db:stream({ gt = maxint }, cb) end) })
          local _, all = async(function(cb) db:stream(cb) end)
          assert.equal(3, #all)
        end)

      it("delivers a live async stream in batches until stopped or closed",
        function()
          local db = ctx.db
          setup(db)
          local seen, stop = {}, nil
          stop = db:stream({ live = true, gte = 1 }, function(err, list)
            assert.is_nil(err)
            for _, e in ipairs(list) do seen[#seen + 1] = e.seq end
            local last = list[#list].seq
            if last < 5 then db:append({ k = "x" }, function() end)
            else stop() end
          end)
          flume.run()
          assert.same({ 1, 2, 3, 4, 5 }, seen)
          local n = 0
          db:stream({ live = true }, function(err)
            assert.is_nil(err)
            n = n + 1
            db:close(function() end)
          end)
          flume.run()
          assert.equal(1, n)
        end)

      it("passes a failed view's error to the callback", function()
        local db = ctx.db
        db:use("bad", { version = 1,
          map = function(v) if v.boom then error("boom") end return v.k end })
        db:use("badr", { version = 1, initial = 0,
          reduce = function(a, v) if v.boom then error("boom") end return a end })
        db:append({ k = "a" }); db:append({ boom = true })
        local err = async(function(cb) db.bad:get("a", cb) end)
        assert.matches("^flume: EVIEW", err)
        err = async(function(cb) db.bad:read({}, cb) end)
        assert.matches("^flume: EVIEW", err)
        err = async(function(cb) db.badr:get(cb) end)
        assert.matches("^flume: EVIEW", err)
      end)

      it("raises misuse at once in the async form", function()
        local db = ctx.db
        setup(db)
        H.raises(function() db.g:get("a", 5, function() end) end,
          "^flume: EINVAL")
        H.raises(function() db.g:get("a", {}, 5) end, "^flume: EINVAL")
        H.raises(function() db.t:read({}, function() end) end,
          "^flume: EINVAL")
        H.raises(function() db.ix:read({ live = true, reverse = true },
          function() end) end, "^flume: EINVAL")
        H.raises(function() db.ix:read("abc", function() end) end,
          "^flume: EINVAL")
      end)
    end)

    -- defect 10: edges of the API.
    describe("numbers at the edges", function()
      local function seqs(db, opts)
        local t = {}
        for seq in db:stream(opts) do t[#t + 1] = seq end
        return t
      end

      it("streams nothing past the int64 limits (gt + 1 wrapped)", function()
        local db = ctx.db
        for i = 1, 3 do db:append(i) end
        for _, reverse in ipairs { false, true } do
          assert.same({}, seqs(db, { gt = maxint, reverse = reverse }))
          assert.same({}, seqs(db, { lt = minint, reverse = reverse }))
          assert.same({}, seqs(db, { gte = maxint, reverse = reverse }))
          assert.same({}, seqs(db, { lte = minint, reverse = reverse }))
          assert.same({}, seqs(db, { lte = -1, reverse = reverse }))
          assert.equal(3, #seqs(db, { lt = maxint, reverse = reverse }))
          assert.equal(3, #seqs(db, { gt = minint, reverse = reverse }))
          assert.equal(3, #seqs(db, { gte = minint, lte = maxint,
            reverse = reverse }))
        end
        assert.same({}, seqs(db, { gt = maxint, live = true }))
      end)

      it("refuses stream options that are not a table", function()
        local db = ctx.db
        db:append(1)
        for _, o in ipairs { "abc", 5, true } do
          H.raises(function() db:stream(o) end,
            "^flume: EINVAL: invalid argument: stream")
          H.raises(function() db:stream(o, function() end) end,
            "^flume: EINVAL: invalid argument: stream")
        end
        H.raises(function() db:stream({}, 5) end,
          "^flume: EINVAL: invalid argument: stream")
      end)

      it("takes limit = 0 and math.huge, refuses the rest", function()
        local db = ctx.db
        db:use("ix", { version = 1, map = function(v) return v end })
        for i = 1, 3 do db:append(i) end
        assert.same({}, seqs(db, { limit = 0 }))
        assert.same({ 0, 1, 2 }, seqs(db, { limit = math.huge }))
        local n = 0
        for _ in db.ix:read { limit = math.huge } do n = n + 1 end
        assert.equal(3, n)
        for _ in db.ix:read { limit = 0 } do error("limit 0 gave one") end
        for _, bad in ipairs { -1, minint, 0 / 0, 1.5, -math.huge, "2" } do
          H.raises(function() db:stream { limit = bad } end,
            "^flume: EINVAL: invalid argument: option 'limit'")
          H.raises(function() db.ix:read { limit = bad } end,
            "^flume: EINVAL: invalid argument: option 'limit'")
        end
        for _, bad in ipairs { 0 / 0, math.huge, -math.huge, 1.5, "1" } do
          H.raises(function() db:stream { gt = bad } end, "^flume: EINVAL")
          H.raises(function() db:stream { lte = bad } end, "^flume: EINVAL")
        end
      end)

      it("waits without a timeout for timeout = math.huge", function()
        local db = ctx.db
        db:close()
        if ctx.dir then H.rm(ctx.dir:match("(.*)/db$")) end
        ctx.db, ctx.dir = H.open(backend, { ready = false })
        db = ctx.db
        db:use("t", { version = 1, initial = 0,
          reduce = function(a) return a + 1 end })
        db:append(1)
        local got, err
        flume.spawn(function()
          local ok, r = pcall(db.t.get, db.t, { timeout = math.huge })
          if ok then got = r else err = r end
        end)
        flume.sleep(0.05) -- the indexer is paused: the get waits
        assert.is_nil(err)
        assert.is_nil(got)
        db:set_ready()
        flume.run()
        assert.is_nil(err)
        assert.equal(1, got)
        assert.equal(1, db.t:get { timeout = math.huge })
        assert.equal(1, db.t:get { timeout = 1e300 })
      end)

      it("refuses a timeout that is NaN, negative or not a number",
        function()
          local db = ctx.db
          db:use("g", { version = 1, map = function(v) return v, 1 end,
            reduce = function(a, n) return (a or 0) + n end })
          db:append(1)
          for _, bad in ipairs { 0 / 0, -1, -math.huge, "1", {} } do
            H.raises(function() db.g:get(1, { timeout = bad }) end,
              "^flume: EINVAL: invalid argument: timeout")
            H.raises(function() db.g:read { timeout = bad } end,
              "^flume: EINVAL: invalid argument: timeout")
          end
        end)

      it("refuses arguments of the wrong type with EINVAL, not a Lua error",
        function()
          local db = ctx.db
          db:use("t", { version = 1, initial = 0,
            reduce = function(a) return a + 1 end })
          H.raises(function() db:append(1, 5) end, "^flume: EINVAL")
          H.raises(function() db:append(1, {}, 5) end, "^flume: EINVAL")
          H.raises(function() db:rebuild(5) end, "^flume: EINVAL")
          H.raises(function() db.t:ready(5) end, "^flume: EINVAL")
          H.raises(function() db.t:get(5) end, "^flume: EINVAL")
          H.raises(function() db:use("u", { version = 1,
            map = function() end }, 5) end, "^flume: EINVAL")
          H.raises(function() db.t:on_progress(print, 0 / 0) end,
            "^flume: EINVAL")
          H.raises(function() db.t:on_progress(print, -1) end,
            "^flume: EINVAL")
        end)
    end)
  end)
end

describe("edges of opening", function()
  it("refuses a path with a NUL byte instead of opening another folder",
    function()
      local dir = H.tmpdir()
      H.raises(function() flume.open(dir .. "/a\0b") end,
        "^flume: EINVAL.*NUL")
      assert.is_nil(io.open(dir .. "/a/data.mdb", "rb"))
      H.raises(function() flume.open("") end, "^flume: EINVAL")
      H.raises(function()
        flume.open(nil, { codec = { name = "a\0b", encode = tostring,
          decode = tostring } })
      end, "^flume: EINVAL.*NUL")
      local db = flume.open()
      H.raises(function() db:use("v", dir .. "/a\0.lua") end,
        "^flume: EINVAL.*NUL")
      db:close()
      H.rm(dir)
    end)

  it("refuses a map_size that is not a positive integer", function()
    for _, bad in ipairs { -1, 0, minint, 1.5, 0 / 0, math.huge, "1" } do
      H.raises(function() flume.open(nil, { map_size = bad }) end,
        "^flume: EINVAL.*map_size")
      local dir = H.tmpdir()
      H.raises(function() flume.open(dir .. "/db", { map_size = bad }) end,
        "^flume: EINVAL.*map_size")
      H.rm(dir)
    end
  end)
end)

describe("on_progress at the edges", function()
  it("with an interval of 0 lets the view catch up (it starved the loop)",
    function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
local flume = require "flume"
local db = flume.open()
local vals = {}
for i = 1, 1000 do vals[i] = { i = i } end
for _ = 1, 10 do db:append(vals, { batch = true }) end
db:use("n", { version = 1, initial = 0, reduce = function(n) return n + 1 end })
local polls = 0
local stop = db.n:on_progress(function() polls = polls + 1 end, 0)
db.n:ready()
stop()
print("caught up", db.n:get(), polls > 0)
db:close()
]])
    f:close()
    local p = io.popen("timeout -s KILL 60 " .. H.lua_command(script) ..
      " 2>&1")
    local out = p:read("a")
    p:close()
    os.remove(script)
    assert.equal("caught up\t10000\ttrue\n", out)
  end)
end)

describe("sleeping at the edges", function()
  it("refuses NaN, negative and non-numbers", function()
    H.raises(function() flume.sleep(nil) end, "^flume: EINVAL")
    for _, bad in ipairs { 0 / 0, -1, -math.huge, "1" } do
      H.raises(function() flume.sleep(bad) end, "^flume: EINVAL")
      H.raises(function() flume.sleep(bad, function() end) end,
        "^flume: EINVAL")
    end
    H.raises(function() flume.core.timer(0 / 0, print) end, "^flume: EINVAL")
    H.raises(function() flume.core.timer(-1, print) end, "^flume: EINVAL")
  end)

  it("never fires a timer of math.huge seconds", function()
    local fired = {}
    local cancel1 = flume.core.timer(math.huge, function() fired[1] = true end)
    local cancel2 = flume.core.timer(1e300, function() fired[2] = true end)
    local cancel3 = flume.core.timer(2 ^ 62, function() fired[3] = true end)
    flume.sleep(0.05)
    cancel1(); cancel2(); cancel3()
    assert.same({}, fired)
  end)

  it("sleeps forever with flume.sleep(math.huge)", function()
    local dir = H.tmpdir()
    local script = dir .. "/sleep.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
      local flume = require "flume"
      flume.spawn(function() flume.sleep(math.huge); print("woke") end)
      flume.sleep(0.2)
      print("asleep")
      os.exit(0)
    ]])
    f:close()
    local out, code = H.run_lua(script)
    H.rm(dir)
    assert.equal(0, code)
    assert.equal("asleep\n", out)
  end)
end)
