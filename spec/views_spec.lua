-- Views: kinds, since-gating, checkpoints, versions, rebuild, failures,
-- the sandbox; on both backends.
local flume = require "flume"
local H = require "helpers.db"

local COUNT = "views-lua/examples/count_by_type.lua"
local TOTAL = "views-lua/examples/total_amount.lua"
local AUTHOR = "views-lua/examples/by_author.lua"

local function events(n, first)
  local types = { "post", "like", "follow" }
  local list = {}
  for i = 1, n do
    local k = (first or 0) + i
    list[i] = { type = types[k % 3 + 1], author = "@u" .. (k % 5),
      amount = k, k = k }
  end
  return list
end

local function collect(iter)
  local out = {}
  for a, b, c in iter do out[#out + 1] = { a, b, c } end
  return out
end

for _, backend in ipairs(H.backends) do
  describe("views on " .. backend, function()
    local ctx = H.fresh(backend)
    before_each(ctx.setup)
    after_each(ctx.teardown)

    describe("a reduce view", function()
      it("gives its initial state on an empty log", function()
        ctx.db:use("total", TOTAL)
        assert.same({ sum = 0, count = 0 }, ctx.db.total:get())
      end)

      it("sees an append as soon as append returns", function()
        ctx.db:use("total", TOTAL)
        ctx.db:append({ amount = 5 })
        assert.same({ sum = 5, count = 1 }, ctx.db.total:get())
        ctx.db:append({ amount = 7 })
        assert.same({ sum = 12, count = 2 }, ctx.db.total:get())
      end)

      it("skips values its map turns into nil", function()
        ctx.db:use("total", TOTAL)
        ctx.db:append({ { amount = 1 }, { other = true }, { amount = 2 } },
          { batch = true })
        assert.same({ sum = 3, count = 2 }, ctx.db.total:get())
      end)

      it("works without a map and without initial", function()
        ctx.db:use("n", { version = 1,
          reduce = function(n, v) return (n or 0) + 1 end })
        ctx.db:append(events(10), { batch = true })
        assert.equal(10, ctx.db.n:get())
      end)

      it("calls its own methods, gated", function()
        ctx.db:use("total", TOTAL)
        ctx.db:append({ { amount = 2 }, { amount = 4 } }, { batch = true })
        assert.equal(3, ctx.db.total:average())
      end)
    end)

    describe("a group view", function()
      it("keeps one accumulator per key", function()
        ctx.db:use("types", COUNT)
        ctx.db:append(events(30), { batch = true })
        assert.equal(10, ctx.db.types:get("post"))
        assert.equal(10, ctx.db.types:get("like"))
        assert.is_nil(ctx.db.types:get("nothing"))
      end)

      it("reads keys in order, with ranges and reverse", function()
        ctx.db:use("types", COUNT)
        ctx.db:append(events(30), { batch = true })
        assert.same({ { "follow", 10 }, { "like", 10 }, { "post", 10 } },
          collect(ctx.db.types:read()))
        assert.same({ { "post", 10 }, { "like", 10 } },
          collect(ctx.db.types:read { reverse = true, limit = 2 }))
        assert.same({ { "like", 10 } },
          collect(ctx.db.types:read { gt = "follow", lt = "post" }))
        assert.same({ { "like", 10 }, { "post", 10 } },
          collect(ctx.db.types:read { gte = "like" }))
      end)

      it("accumulates across many batches and checkpoints", function()
        ctx.db:use("types", COUNT)
        for b = 0, 9 do ctx.db:append(events(100, b * 100), { batch = true }) end
        local total = 0
        for _, n in ctx.db.types:read() do total = total + n end
        assert.equal(1000, total)
      end)

      it("hands reduce the accumulator last stored, whatever its type",
        function()
          -- A key's accumulator goes from a number to a string, a table,
          -- deleted and back, a checkpoint between each: reduce always
          -- gets the latest one (the indexer keeps committed numbers to
          -- skip store lookups; what replaces them must win).
          ctx.db:use("acc", { version = 1,
            map = function(v) return v.k, v.to end,
            reduce = function(acc, to)
              local was = type(acc) == "table" and "table:" .. acc[1] or
                tostring(acc)
              if to == "number" then return 5 end
              if to == "string" then return "text" end
              if to == "table" then return { was } end
              if to == "delete" then return nil end
              return was
            end })
          local steps = { "number", "string", "probe", "number", "table",
            "probe", "number", "delete", "probe", "number", "probe" }
          local expect = { "text", "table:5", "nil", "5" }
          local probes = 0
          for _, to in ipairs(steps) do
            ctx.db:append({ k = 1, to = to })
            local got = ctx.db.acc:get(1)
            if to == "probe" then
              probes = probes + 1
              assert.equal(expect[probes], got)
            end
          end
          assert.equal(4, probes)
        end)

      it("orders numbers, strings and composite keys", function()
        ctx.db:use("g", { version = 1,
          map = function(v) return v.key, 1 end,
          reduce = function(a, n) return (a or 0) + n end })
        ctx.db:append({ { key = 10 }, { key = 2 }, { key = -1.5 }, { key = "b" },
          { key = "a" }, { key = { 1, "x" } }, { key = true } }, { batch = true })
        local keys = {}
        for k in ctx.db.g:read() do keys[#keys + 1] = k end
        assert.same({ true, -1.5, 2, 10, "a", "b", { 1, "x" } }, keys)
      end)

      it("hands its methods a read handle with get and read", function()
        ctx.db:use("types", { version = 1,
          map = function(v) return v.type, 1 end,
          reduce = function(a, n) return (a or 0) + n end,
          methods = {
            top = { "async", function(h, limit)
              local out = {}
              for k, n in h.read { reverse = true, limit = limit } do
                out[#out + 1] = k .. "=" .. n
              end
              return out
            end },
            posts = { "sync", function(h) return h.get("post") end },
          } })
        ctx.db:append(events(30), { batch = true })
        assert.same({ "post=10", "like=10" }, ctx.db.types:top(2))
        assert.equal(10, ctx.db.types:posts())
      end)
    end)

    describe("an index view", function()
      it("gives the values indexed under a key, in seq order", function()
        ctx.db:use("authors", AUTHOR)
        ctx.db:append(events(20), { batch = true })
        local vals = ctx.db.authors:get("@u1")
        assert.equal(4, #vals)
        for _, v in ipairs(vals) do assert.equal("@u1", v.author) end
        assert.is_true(vals[1].k < vals[2].k)
        assert.same({}, ctx.db.authors:get("@nobody"))
      end)

      it("reads key, seq, value in key order then seq order", function()
        ctx.db:use("authors", AUTHOR)
        ctx.db:append(events(10), { batch = true })
        local got = collect(ctx.db.authors:read { gte = "@u1", lte = "@u2" })
        assert.equal(4, #got)
        assert.same({ "@u1", 0, "@u1" }, { got[1][1], got[1][2], got[1][3].author })
        assert.same({ "@u1", 5 }, { got[2][1], got[2][2] })
        assert.same({ "@u2", 1 }, { got[3][1], got[3][2] })
        assert.same({ "@u2", 6 }, { got[4][1], got[4][2] })
      end)

      it("indexes a value under every key of a list, none for nil", function()
        ctx.db:use("tags", { version = 1, map = function(v) return v.tags end })
        ctx.db:append({ { tags = { "a", "b" } }, { tags = nil }, { tags = { "b" } } },
          { batch = true })
        assert.equal(1, #ctx.db.tags:get("a"))
        assert.equal(2, #ctx.db.tags:get("b"))
      end)

      it("goes on with entries committed later in a live read", function()
        ctx.db:use("authors", AUTHOR)
        ctx.db:append({ author = "@a", n = 1 })
        local got = {}
        flume.spawn(function()
          for key, seq, v in ctx.db.authors:read { live = true } do
            got[#got + 1] = key .. ":" .. v.n
            if #got == 3 then break end
          end
        end)
        flume.spawn(function()
          ctx.db:append({ author = "@b", n = 2 })
          flume.sleep(0.01)
          ctx.db:append({ author = "@a", n = 3 })
        end)
        flume.run()
        assert.same({ "@a:1", "@b:2", "@a:3" }, got)
      end)
    end)

    describe("since-gating", function()
      it("waits until the view has caught up with the log", function()
        ctx.db:use("types", COUNT)
        for i = 1, 5 do
          ctx.db:append({ type = "post" })
          assert.equal(i, ctx.db.types:get("post"))
        end
      end)

      it("releases waiters added in any order", function()
        local db, dir = H.open(backend, { ready = false })
        db:use("types", COUNT)
        local released = {}
        for _, n in ipairs { 10, 20, 30, 25, 15 } do
          db:append(events(n), { batch = true })
          db.types:ready(function(err)
            assert.is_nil(err)
            released[#released + 1] = n
          end)
        end
        flume.sleep(0.02)
        assert.same({}, released)
        db:set_ready()
        flume.run()
        table.sort(released)
        assert.same({ 10, 15, 20, 25, 30 }, released)
        db:close()
        H.rm(dir)
      end)

      it("does not wait with wait = false", function()
        local db, dir = H.open(backend, { ready = false })
        db:use("types", COUNT)
        db:append({ type = "post" })
        assert.is_nil(db.types:get("post", { wait = false }))
        db:set_ready()
        assert.equal(1, db.types:get("post"))
        db:close()
        H.rm(dir)
      end)

      it("gives up after a timeout with ETIMEDOUT", function()
        local db, dir = H.open(backend, { ready = false })
        db:use("types", COUNT)
        db:append({ type = "post" })
        H.raises(function()
          db.types:get("post", { timeout = 0.05 })
        end, "^flume: ETIMEDOUT: .*waiting for view 'types' to reach seq 0")
        db:close()
        H.rm(dir)
      end)

      it("keeps appending while the indexer is held back", function()
        local db, dir = H.open(backend, { ready = false })
        db:use("total", TOTAL)
        for i = 1, 3 do assert.equal(i - 1, db:append({ amount = i })) end
        assert.equal(-1, db.total.since)
        db:set_ready()
        assert.same({ sum = 6, count = 3 }, db.total:get())
        db:close()
        H.rm(dir)
      end)
    end)

    it("catches up a view added after the appends", function()
      ctx.db:append(events(300), { batch = true })
      ctx.db:use("types", COUNT)
      assert.equal(100, ctx.db.types:get("post"))
      assert.equal(299, ctx.db.types.since)
    end)

    it("feeds views the mapped values", function()
      local db, dir = H.open(backend, {
        mapper = function(v, seq) return { type = v.type .. "!", seq = seq } end })
      db:use("types", COUNT)
      db:append({ { type = "a" }, { type = "a" } }, { batch = true })
      assert.equal(2, db.types:get("a!"))
      db:close()
      H.rm(dir)
    end)

    it("rebuilds every view from the log, the same as a fresh build", function()
      ctx.db:use("types", COUNT)
      ctx.db:use("total", TOTAL)
      ctx.db:append(events(200), { batch = true })
      local before_types = collect(ctx.db.types:read())
      local before_total = ctx.db.total:get()
      local appended = 0
      flume.spawn(function()
        for b = 1, 5 do
          ctx.db:append(events(10, 1000 + b * 10), { batch = true })
          appended = appended + 10
        end
      end)
      ctx.db:rebuild()
      flume.run()
      -- a fresh build over the same log
      local fresh = {}
      for _, v in ctx.db:stream() do
        fresh[v.type] = (fresh[v.type] or 0) + 1
      end
      for _, e in ipairs(collect(ctx.db.types:read())) do
        assert.equal(fresh[e[1]], e[2])
      end
      assert.equal(50, appended)
      assert.equal(#before_types, 3)
      assert.equal(before_total.count + 50, ctx.db.total:get().count)
    end)

    describe("failures", function()
      it("stops only the failing view, naming the seq", function()
        ctx.db:use("bad", { version = 1, map = function(v)
          if v.k == 3 then error("no threes") end
          return v.type, 1
        end, reduce = function(a, n) return (a or 0) + n end })
        ctx.db:use("types", COUNT)
        ctx.db:append(events(6), { batch = true })
        assert.equal(2, ctx.db.types:get("post"))
        H.raises(function() ctx.db.bad:get("post") end,
          "^flume: EVIEW: view 'bad' failed at seq 2: .*no threes")
        assert.equal(5, ctx.db:append({ type = "post" }) - 1)
      end)

      it("rebuilds a failed view when a fixed version is used", function()
        ctx.db:use("v", { version = 1, reduce = function() error("bug") end })
        ctx.db:append(events(3), { batch = true })
        H.raises(function() ctx.db.v:get() end, "bug")
        ctx.db:use("v", { version = 2,
          reduce = function(n) return (n or 0) + 1 end })
        assert.equal(3, ctx.db.v:get())
      end)

      it("stops an endless loop with the instruction limit", function()
        ctx.db:use("loop", "return { version = 1, reduce = function() " ..
          "while true do end end }")
        ctx.db:use("types", COUNT)
        ctx.db:append({ type = "post" })
        H.raises(function() ctx.db.loop:get() end,
          "instruction limit exceeded")
        assert.equal(1, ctx.db.types:get("post"))
      end)

      it("refuses io, os, require, load, debug and randomness", function()
        for _, name in ipairs { "io", "os", "require", "load", "debug",
          "collectgarbage", "dofile" } do
          ctx.db:use("s_" .. name, "return { version = 1, reduce = function() " ..
            "return " .. name .. " == nil end }")
        end
        ctx.db:use("rnd", "return { version = 1, reduce = function() " ..
          "return math.random == nil end }")
        ctx.db:append(1)
        for _, name in ipairs { "io", "os", "require", "load", "debug",
          "collectgarbage", "dofile" } do
          assert.is_true(ctx.db["s_" .. name]:get(), name .. " is reachable")
        end
        assert.is_true(ctx.db.rnd:get())
      end)

      it("refuses bad scripts with a clear error", function()
        H.raises(function() ctx.db:use("x", "return {") end,
          "^flume: ESCRIPT: .*view 'x' does not load: .*x:1:")
        H.raises(function()
          ctx.db:use("x", "return { map = function() end }")
        end, "no integer version")
        H.raises(function()
          ctx.db:use("x", "return { version = 1 }")
        end, "neither map nor reduce")
        H.raises(function()
          ctx.db:use("x", "return 42")
        end, "must return a table")
        local captured = 1
        H.raises(function()
          ctx.db:use("x", { version = 1, reduce = function() return captured end })
        end, "captures the local variable 'captured'")
        H.raises(function() ctx.db:use("append", COUNT) end,
          "^flume: EEXIST")
        H.raises(function() ctx.db:use("x", "no/such/file.lua") end,
          "^flume: ENOENT")
      end)

      it("refuses a second view of the same name and version", function()
        ctx.db:use("types", COUNT)
        H.raises(function() ctx.db:use("types", COUNT) end,
          "^flume: EEXIST: .*bump the version")
      end)
    end)

    it("lets progress be observed while it catches up", function()
      local db, dir = H.open(backend, { ready = false })
      for b = 0, 19 do db:append(events(1000, b * 1000), { batch = true }) end
      db:use("types", COUNT)
      local seen = {}
      local stop = db.types:on_progress(function(s)
        seen[#seen + 1] = { since = s.since, log = s.log_since }
      end, 0.001)
      db:set_ready()
      db.types:ready()
      flume.sleep(0.05)
      stop()
      assert.is_true(#seen >= 2)
      assert.equal(-1, seen[1].since)
      assert.same({ since = 19999, log = 19999 }, seen[#seen])
      for i = 2, #seen do assert.is_true(seen[i].since >= seen[i - 1].since) end
      db:close()
      H.rm(dir)
    end)

    it("reports its progress", function()
      ctx.db:use("types", COUNT)
      ctx.db:append(events(10), { batch = true })
      ctx.db.types:ready()
      local s = ctx.db.types:status()
      assert.equal("group", s.kind)
      assert.equal(9, s.since)
      assert.equal(9, s.log_since)
      assert.is_false(s.failed)
    end)
  end)
end

describe("durable views", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  local function counting_view(version, calls)
    return { version = version, map = function(v) return v.type, 1 end,
      reduce = function(a, n) return (a or 0) + n end }, calls
  end

  it("resumes from its checkpoint on reopen, without a rebuild", function()
    local db = flume.open(dir .. "/db")
    db:use("types", COUNT)
    db:append(events(90), { batch = true })
    assert.equal(30, db.types:get("post"))
    db:close()
    db = flume.open(dir .. "/db")
    db:use("types", COUNT)
    assert.equal(89, db.types.since) -- readable at once
    assert.equal(30, db.types:get("post", { wait = false }))
    db:append({ type = "post" })
    assert.equal(31, db.types:get("post"))
    db:close()
  end)

  it("rebuilds with the new logic when the version changes", function()
    local db = flume.open(dir .. "/db")
    db:use("types", counting_view(1))
    db:append(events(30), { batch = true })
    assert.equal(10, db.types:get("post"))
    db:close()
    db = flume.open(dir .. "/db")
    db:use("types", { version = 2, map = function(v) return v.type, 10 end,
      reduce = function(a, n) return (a or 0) + n end })
    assert.equal(100, db.types:get("post"))
    db:close()
  end)

  it("warns about a changed script with an unchanged version", function()
    local db = flume.open(dir .. "/db")
    db:use("types", "return { version = 1, map = function(v) return v.type, 1 end, " ..
      "reduce = function(a, n) return (a or 0) + n end }")
    db:append(events(3), { batch = true })
    assert.equal(1, db.types:get("post")) -- checkpointed
    db:close()
    db = flume.open(dir .. "/db")
    db:use("types", "return { version = 1, map = function(v) return v.type, 2 end, " ..
      "reduce = function(a, n) return (a or 0) + n end }")
    assert.is_true(db.types:status().script_changed)
    assert.equal(1, db.types:get("post")) -- not rebuilt
    db:append({ type = "like" })
    -- 1 from before, and 2 from the changed script; checkpointed again
    assert.equal(3, db.types:get("like"))
    db:close()
    local changed = "return { version = 1, map = function(v) return v.type, 2 end, " ..
      "reduce = function(a, n) return (a or 0) + n end }"
    db = flume.open(dir .. "/db")
    db:use("types", changed)
    assert.is_true(db.types:status().script_changed) -- still reported
    db:rebuild()
    assert.is_false(db.types:status().script_changed)
    assert.equal(2, db.types:get("post"))
    db:close()
    db = flume.open(dir .. "/db")
    db:use("types", changed)
    assert.is_false(db.types:status().script_changed)
    db:close()
  end)
end)
