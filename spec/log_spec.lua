-- The log: appends, reads, streams, since, close, on both backends.
local flume = require "flume"
local H = require "helpers.db"
local G = require "helpers.gen"
local M = require "helpers.model"

local function collect(iter)
  local seqs, vals = {}, {}
  for s, v in iter do
    seqs[#seqs + 1] = s
    vals[#vals + 1] = v
  end
  return seqs, vals
end

local function range(a, b, step)
  local t = {}
  for i = a, b, step or 1 do t[#t + 1] = i end
  return t
end

for _, backend in ipairs(H.backends) do
  describe("the log on " .. backend, function()
    local ctx = H.fresh(backend)
    before_each(ctx.setup)
    after_each(ctx.teardown)

    it("has since -1 when empty", function()
      assert.equal(-1, ctx.db.since)
    end)

    it("gives the first value seq 0 and counts up densely", function()
      assert.equal(0, ctx.db:append({ n = 0 }))
      assert.equal(1, ctx.db:append({ n = 1 }))
      assert.equal(2, ctx.db:append("two"))
      assert.equal(2, ctx.db.since)
    end)

    it("returns the value stored at a seq", function()
      ctx.db:append({ type = "post", author = "@a", tags = { "x", "y" } })
      local v = ctx.db:get(0)
      assert.same({ type = "post", author = "@a", tags = { "x", "y" } }, v)
    end)

    it("raises ENOTFOUND for a seq that is not in the log", function()
      ctx.db:append(1)
      assert.has_error(function() ctx.db:get(1) end,
        "flume: ENOTFOUND: no such entry: no value at seq 1 (the log's since is 0)")
      assert.error_matches(function() ctx.db:get(-1) end,
        "^flume: EINVAL: .*an integer >= 0, not %-1")
    end)

    it("refuses a seq that is not an integer", function()
      assert.error_matches(function() ctx.db:get("0") end,
        "^flume: EINVAL: .*must be an integer >= 0, not a string")
      assert.error_matches(function() ctx.db:get(1.5) end,
        "^flume: EINVAL: .*must be an integer >= 0, not 1.5")
    end)

    it("appends a batch at consecutive seqs and returns the last", function()
      ctx.db:append("first")
      local last = ctx.db:append({ "a", "b", "c" }, { batch = true })
      assert.equal(3, last)
      assert.equal(3, ctx.db.since)
      assert.same({ "first", "a", "b", "c" }, select(2, collect(ctx.db:stream())))
    end)

    it("appends nothing of a batch with an unencodable value", function()
      ctx.db:append("before")
      assert.error_matches(function()
        ctx.db:append({ "ok", { f = print }, "ok" }, { batch = true })
      end, "^flume: EENCODE: .*batch item 2: .*function")
      assert.equal(0, ctx.db.since)
      assert.same({ "before" }, select(2, collect(ctx.db:stream())))
    end)

    it("refuses functions, userdata, threads and cyclic tables", function()
      local cyclic = {}
      cyclic.self = cyclic
      local deep = {}
      local t = deep
      for _ = 1, 200 do
        t.x = {}
        t = t.x
      end
      for _, bad in ipairs { print, io.stdout, coroutine.create(print),
        cyclic, deep } do
        assert.error_matches(function() ctx.db:append(bad) end,
          "^flume: EENCODE")
      end
      assert.equal(-1, ctx.db.since)
    end)

    it("round-trips every kind of msgpack value exactly", function()
      local values = {
        true, false, 0, -1, 1.5, 1.0, math.maxinteger, math.mininteger,
        "", "text", "\0\255binary\128", string.rep("x", 70000),
        { 1, 2, 3 }, { a = 1, b = { c = { d = "deep" } } },
        { 1, nil, 3 }, { [1] = "a", [2] = "b", x = "mixed" },
        1 / 0, -1 / 0,
      }
      for _, v in ipairs(values) do
        local seq = ctx.db:append(v)
        local back = ctx.db:get(seq)
        assert.same(v, back)
        assert.equal(math.type(v), math.type(back))
      end
      local nan = ctx.db:get(ctx.db:append(0 / 0))
      assert.is_true(nan ~= nan)
    end)

    it("keeps integers and floats apart", function()
      ctx.db:append({ i = 3, f = 3.0 })
      local v = ctx.db:get(0)
      assert.equal("integer", math.type(v.i))
      assert.equal("float", math.type(v.f))
    end)

    it("streams nothing from an empty log", function()
      assert.same({}, collect(ctx.db:stream()))
      assert.same({}, collect(ctx.db:stream { reverse = true }))
    end)

    describe("stream ranges", function()
      before_each(function()
        local batch = {}
        for i = 0, 9 do batch[#batch + 1] = { i = i } end
        ctx.db:append(batch, { batch = true })
      end)

      local cases = {
        { {}, range(0, 9) },
        { { gt = 3 }, range(4, 9) },
        { { gte = 3 }, range(3, 9) },
        { { lt = 3 }, range(0, 2) },
        { { lte = 3 }, range(0, 3) },
        { { gt = 2, lt = 6 }, range(3, 5) },
        { { gte = 2, lte = 6 }, range(2, 6) },
        { { gt = 2, lte = 6 }, range(3, 6) },
        { { gte = 2, lt = 6 }, range(2, 5) },
        { { reverse = true }, range(9, 0, -1) },
        { { reverse = true, gt = 6 }, range(9, 7, -1) },
        { { reverse = true, lt = 4 }, range(3, 0, -1) },
        { { reverse = true, gte = 2, lte = 6 }, range(6, 2, -1) },
        { { limit = 3 }, range(0, 2) },
        { { reverse = true, limit = 3 }, range(9, 7, -1) },
        { { gt = 4, limit = 2 }, range(5, 6) },
        { { gt = 9 }, {} },
        { { lt = 0 }, {} },
        { { gte = 5, lte = 4 }, {} },
        { { limit = 0 }, {} },
        { { gte = 8, lte = 100 }, range(8, 9) },
      }
      for _, case in ipairs(cases) do
        local opts, want = case[1], case[2]
        local parts = {}
        for k, v in pairs(opts) do parts[#parts + 1] = k .. "=" .. tostring(v) end
        table.sort(parts)
        it("yields the seqs of {" .. table.concat(parts, ", ") .. "}", function()
          local seqs, vals = collect(ctx.db:stream(opts))
          assert.same(want, seqs)
          for i, s in ipairs(seqs) do assert.equal(s, vals[i].i) end
        end)
      end

      it("reads past the size of one chunk", function()
        local batch = {}
        for i = 10, 2999 do batch[#batch + 1] = { i = i } end
        ctx.db:append(batch, { batch = true })
        local seqs = collect(ctx.db:stream())
        assert.same(range(0, 2999), seqs)
        assert.same(range(2999, 0, -1), collect(ctx.db:stream { reverse = true }))
      end)

      it("agrees with a model over random ranges across chunks", function()
        -- 600 values: a plain stream reads them in chunks of 256, so
        -- bounds and limits near 256 and 512 cut chunks in every way.
        local batch = {}
        for i = 10, 599 do batch[#batch + 1] = { i = i } end
        ctx.db:append(batch, { batch = true })
        local seed = tonumber(os.getenv("FLUME_SEED")) or os.time()
        local r = G.rng(seed)
        local near = { -2, 0, 1, 254, 255, 256, 257, 511, 512, 513, 598, 599,
          600, 700 }
        local function bound()
          return r.chance(0.5) and r.pick(near) or r.int(-2, 701)
        end
        for _ = 1, 300 do
          local o = {}
          local lo, hi = r.int(1, 3), r.int(1, 3)
          if lo == 2 then o.gt = bound() elseif lo == 3 then o.gte = bound() end
          if hi == 2 then o.lt = bound() elseif hi == 3 then o.lte = bound() end
          if r.chance(0.5) then o.reverse = true end
          if r.chance(0.3) then o.limit = math.max(bound(), 0) end
          -- the model: the seqs in range, in order, up to the limit
          local a = o.gt and o.gt + 1 or o.gte or 0
          local b = o.lt and o.lt - 1 or o.lte or 599
          a, b = math.max(a, 0), math.min(b, 599)
          local want = o.reverse and range(b, a, -1) or range(a, b)
          if o.limit then
            for i = #want, o.limit + 1, -1 do want[i] = nil end
          end
          local seqs, vals = collect(ctx.db:stream(o))
          local why = ("FLUME_SEED=%d, stream %s"):format(seed, M.show(o))
          assert.same(want, seqs, why)
          for i, sq in ipairs(seqs) do assert.equal(sq, vals[i].i, why) end
        end
      end)

      it("stops a stream at a closed database between chunks", function()
        local batch = {}
        for i = 10, 599 do batch[#batch + 1] = { i = i } end
        ctx.db:append(batch, { batch = true })
        local it, n = ctx.db:stream(), 0
        for _ in it do
          n = n + 1
          if n == 256 then break end
        end
        ctx.db:close()
        assert.error_matches(function() it() end, "ECLOSED")
        -- and again: a failed read does not end it as if it were done
        assert.error_matches(function() it() end, "ECLOSED")
      end)

      it("refuses options that are not integers", function()
        assert.error_matches(function() ctx.db:stream { gt = "1" } end,
          "option 'gt' must be an integer")
      end)
    end)

    it("lets a stream see values appended while it iterates", function()
      ctx.db:append(0)
      local seen = {}
      for s in ctx.db:stream() do
        seen[#seen + 1] = s
        if s < 3 then ctx.db:append(s + 1) end
      end
      assert.same({ 0, 1, 2, 3 }, seen)
    end)

    it("goes on delivering values appended later to a live stream", function()
      ctx.db:append("old")
      local got = {}
      flume.spawn(function()
        for s, v in ctx.db:stream { live = true } do
          got[#got + 1] = v
          if s == 3 then break end
        end
      end)
      flume.spawn(function()
        for i = 1, 3 do
          ctx.db:append("new" .. i)
          flume.sleep(0.01)
        end
      end)
      flume.run()
      assert.same({ "old", "new1", "new2", "new3" }, got)
    end)

    it("ends a live stream when the database closes", function()
      local ended = false
      flume.spawn(function()
        for _ in ctx.db:stream { live = true } do end
        ended = true
      end)
      flume.spawn(function() ctx.db:close() end)
      flume.run()
      assert.is_true(ended)
    end)

    it("calls back an async append with its seq, after since has advanced",
      function()
        local got
        ctx.db:append("a", function(err, seq)
          got = { err = err, seq = seq, since = ctx.db.since }
        end)
        assert.is_nil(got) -- never from inside the call
        flume.run()
        assert.same({ seq = 0, since = 0 }, got)
      end)

    it("rides many async appends on few commits (group commit)", function()
      local commits, acked = 0, {}
      local stop = ctx.db:on_since(function() commits = commits + 1 end)
      for i = 1, 1000 do
        ctx.db:append({ i = i }, function(err, seq)
          assert.is_nil(err)
          acked[#acked + 1] = seq
        end)
      end
      flume.run()
      stop()
      assert.same(range(0, 999), acked)
      assert.is_true(commits < 100, "expected few commits, got " .. commits)
      for s, v in ctx.db:stream() do assert.equal(s + 1, v.i) end
    end)

    it("tells on_since observers every new since until stopped", function()
      local seen = {}
      local stop = ctx.db:on_since(function(since) seen[#seen + 1] = since end)
      ctx.db:append("a")
      ctx.db:append({ "b", "c" }, { batch = true })
      stop()
      ctx.db:append("d")
      assert.same({ 0, 2 }, seen)
    end)

    it("lets a callback use the sync form: it yields there", function()
      local second
      ctx.db:append("first", function(err, seq)
        assert.is_nil(err)
        second = ctx.db:append("after " .. seq)
      end)
      flume.run()
      assert.equal(1, second)
      assert.equal("after 0", ctx.db:get(1))
    end)

    it("runs flume.spawn bodies as coroutines whose sync calls yield", function()
      local order = {}
      flume.spawn(function()
        order[#order + 1] = "a start"
        ctx.db:append("a")
        order[#order + 1] = "a done"
      end)
      order[#order + 1] = "spawned"
      flume.run()
      assert.same({ "a start", "spawned", "a done" }, order)
    end)

    it("raises a clear error for a sync call where it can neither wait nor yield",
      function()
        local err
        ctx.db:append("x", function()
          local co = coroutine.create(function() return ctx.db:append("y") end)
          local _, e = coroutine.resume(co)
          err = e
        end)
        flume.run()
        assert.matches("^flume: EBUSY: busy: cannot wait here", err)
      end)

    it("raises an error thrown by a callback from flume.run", function()
      ctx.db:append("x", function() error("boom in callback") end)
      assert.error_matches(function() flume.run() end, "boom in callback")
    end)

    it("applies the mapper to get and stream", function()
      local db, dir = H.open(backend, {
        mapper = function(v, seq) return { v = v, seq = seq } end })
      db:append("a")
      db:append("b")
      assert.same({ v = "b", seq = 1 }, db:get(1))
      local _, vals = collect(db:stream())
      assert.same({ { v = "a", seq = 0 }, { v = "b", seq = 1 } }, vals)
      db:close()
      H.rm(dir)
    end)

    it("raises ECLOSED for every call after close", function()
      ctx.db:close()
      assert.error_matches(function() ctx.db:append(1) end, "^flume: ECLOSED")
      assert.error_matches(function() ctx.db:get(0) end, "^flume: ECLOSED")
      assert.error_matches(function() ctx.db:stream() end, "^flume: ECLOSED")
      assert.error_matches(function() return ctx.db.since end, "^flume: ECLOSED")
      ctx.db:close() -- again: a no-op
    end)

    it("writes appends still in flight when it closes", function()
      local acked = 0
      for i = 1, 200 do
        ctx.db:append(i, function(err)
          assert.is_nil(err)
          acked = acked + 1
        end)
      end
      ctx.db:close()
      assert.equal(200, acked)
    end)

    it("closes through <close>", function()
      local db, dir = H.open(backend)
      do
        local d <close> = db
        d:append(1)
      end
      assert.is_true(db:closed())
      H.rm(dir)
    end)

    it("reports a failed commit and appends nothing of it", function()
      if not flume.core.test_hooks then return pending("no test hooks") end
      ctx.db:append("kept")
      ctx.db._c:fail_commits("EIO", 1)
      assert.error_matches(function() ctx.db:append("lost") end, "^flume: EIO")
      assert.equal(0, ctx.db.since)
      assert.equal(1, ctx.db:append("next"))
      assert.same({ "kept", "next" }, select(2, collect(ctx.db:stream())))
    end)

    it("passes a failed commit to the async callback", function()
      if not flume.core.test_hooks then return pending("no test hooks") end
      ctx.db._c:fail_commits("ENOSPC", 1)
      local got
      ctx.db:append("x", function(err, seq) got = { err, seq } end)
      flume.run()
      assert.matches("^flume: ENOSPC", got[1])
      assert.is_nil(got[2])
    end)

    describe("codecs", function()
      it("stores strings as they are with the raw codec", function()
        local db, dir = H.open(backend, { codec = "raw" })
        db:append("\0bytes\255")
        assert.equal("\0bytes\255", db:get(0))
        assert.error_matches(function() db:append({}) end,
          "^flume: EENCODE: .*expected a string")
        db:close()
        H.rm(dir)
      end)

      it("uses a custom codec for both directions", function()
        local codec = {
          name = "upper",
          encode = function(v) return tostring(v):upper() end,
          decode = function(s) return "<" .. s .. ">" end,
        }
        local db, dir = H.open(backend, { codec = codec })
        db:append("hello")
        assert.equal("<HELLO>", db:get(0))
        local bad = { name = "bad", encode = function() return 1 end,
          decode = function(s) return s end }
        local db2, dir2 = H.open(backend, { codec = bad })
        assert.error_matches(function() db2:append("x") end,
          "^flume: EENCODE: .*returned a number")
        db:close()
        db2:close()
        H.rm(dir)
        H.rm(dir2)
      end)

      it("refuses a codec that is not one", function()
        assert.error_matches(function() H.open(backend, { codec = "json" }) end,
          "^flume: EINVAL: invalid argument: codec must be")
      end)
    end)
  end)
end

describe("the durable log", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it("keeps every value across close and reopen", function()
    local db = flume.open(dir .. "/db")
    for i = 0, 99 do db:append({ i = i }) end
    db:close()
    db = flume.open(dir .. "/db")
    assert.equal(99, db.since)
    assert.same({ i = 42 }, db:get(42))
    assert.equal(100, db:append({ i = 100 }))
    db:close()
  end)

  it("grows its storage on demand, losing nothing", function()
    local db = flume.open(dir .. "/db", { map_size = 1 << 20 })
    local big = string.rep("x", 3000)
    for b = 1, 20 do
      local batch = {}
      for i = 1, 100 do batch[i] = { b = b, i = i, big = big } end
      db:append(batch, { batch = true })
    end
    db:close()
    db = flume.open(dir .. "/db", { map_size = 1 << 20 })
    assert.equal(1999, db.since)
    local n = 0
    for _, v in db:stream() do
      n = n + 1
      assert.equal(big, v.big)
    end
    assert.equal(2000, n)
    db:close()
  end)

  it("refuses a second writer in the same process", function()
    local db = flume.open(dir .. "/db")
    assert.error_matches(function() flume.open(dir .. "/db") end,
      "^flume: ELOCKED")
    db:close()
    flume.open(dir .. "/db"):close() -- free again once closed
  end)

  it("refuses a second writer in another process", function()
    local db = flume.open(dir .. "/db")
    local out, code = H.run_lua("spec/helpers/open_child.lua", dir .. "/db")
    db:close()
    assert.matches("flume: ELOCKED: database is open for writing by another process", out)
    assert.equal(1, code)
  end)

  it("refuses to reopen a database with another codec", function()
    flume.open(dir .. "/db", { codec = "raw" }):close()
    assert.has_error(function() flume.open(dir .. "/db") end,
      "flume: ECODEC: database was written with another codec: " .. dir ..
      "/db was written with codec 'raw', not 'msgpack'")
    flume.open(dir .. "/db", { codec = "raw" }):close()
  end)

  it("refuses a folder that is not a database", function()
    local f = assert(io.open(dir .. "/data.mdb", "w"))
    f:write(string.rep("garbage!", 2048))
    f:close()
    assert.error_matches(function() flume.open(dir) end, "^flume: ECORRUPT")
  end)

  it("reports a path it cannot create", function()
    assert.error_matches(function() flume.open("/proc/no/such/dir") end,
      "^flume: ENOENT")
  end)
end)
