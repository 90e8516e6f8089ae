-- Single appends issued in one loop turn ride one job of the writer (a
-- run) and are told in bulk: each callback still runs exactly once, in
-- order, with its own seq or the error of the commit that carried it.
local flume = require "flume"
local H = require "helpers.db"

local function values(db)
  local t = {}
  for _, v in db:stream() do t[#t + 1] = v end
  return t
end

for _, backend in ipairs(H.backends) do
  describe("appends of one loop turn on " .. backend, function()
    local ctx = H.fresh(backend)
    before_each(ctx.setup)
    after_each(ctx.teardown)

    it("call every callback once, in order, with consecutive seqs", function()
      local db, got, n = ctx.db, {}, 3000
      for i = 1, n do
        db:append({ i = i }, function(err, seq)
          assert.is_nil(err)
          got[#got + 1] = { i, seq }
        end)
      end
      flume.run()
      assert.equal(n, #got)
      for k = 1, n do assert.same({ k, k - 1 }, got[k]) end
      assert.equal(n - 1, db.since)
      local vals = values(db)
      for k = 1, n do assert.equal(k, vals[k].i) end
    end)

    it("keep their order beside batches and sync appends", function()
      local db, order = ctx.db, {}
      local function note(tag)
        return function(err, seq)
          assert.is_nil(err)
          order[#order + 1] = tag .. "@" .. seq
        end
      end
      db:append("a", note("a"))
      db:append("b", note("b"))
      db:append({ "c", "d" }, { batch = true }, note("cd"))
      db:append("e", note("e"))
      assert.equal(5, db:append("f")) -- sync: the loop runs the others first
      db:append("g", note("g"))
      flume.run()
      assert.same({ "a@0", "b@1", "cd@3", "e@4", "g@6" }, order)
      assert.same({ "a", "b", "c", "d", "e", "f", "g" }, values(db))
    end)

    it("give every append of a failed commit the error, once", function()
      if not flume.core.test_hooks then return pending("no test hooks") end
      local db, n = ctx.db, 500
      db:append("kept")
      -- Two commits fail: the first append may go alone (the writer was
      -- idle), the rest of the turn rides the next.
      db._c:fail_commits("EIO", 2)
      local calls, errs = {}, 0
      for i = 1, n do
        db:append(i, function(err, seq)
          calls[i] = (calls[i] or 0) + 1
          assert.matches("^flume: EIO", err)
          assert.is_nil(seq)
          errs = errs + 1
        end)
      end
      flume.run()
      db._c:fail_commits("EIO", 0)
      assert.equal(n, errs)
      for i = 1, n do assert.equal(1, calls[i]) end
      assert.equal(0, db.since)
      -- The log goes on after them, at the next seq.
      local seqs = {}
      for i = 1, 3 do
        db:append("next" .. i, function(err, seq)
          assert.is_nil(err)
          seqs[#seqs + 1] = seq
        end)
      end
      flume.run()
      assert.same({ 1, 2, 3 }, seqs)
      assert.same({ "kept", "next1", "next2", "next3" }, values(db))
    end)

    it("tell the other callbacks when one of them raises", function()
      local db, n, called = ctx.db, 200, 0
      for i = 1, n do
        db:append(i, function(err)
          assert.is_nil(err)
          called = called + 1
          if i == 10 then error("boom in callback 10") end
        end)
      end
      assert.error_matches(function() flume.run() end, "boom in callback 10")
      flume.run()
      assert.equal(n, called)
      assert.equal(n - 1, db.since)
    end)

    it("go on past a callback that waits, which resumes after", function()
      -- A run's callbacks share one coroutine until one of them waits (a
      -- sync call); the rest must neither wait for it nor run twice.
      local db, n, order = ctx.db, 300, {}
      local waits = { [3] = true, [150] = true, [300] = true }
      for i = 1, n do
        db:append(i, function(err, seq)
          assert.is_nil(err)
          assert.equal(i - 1, seq)
          order[#order + 1] = i
          if waits[i] then
            -- waits for a commit of its own, after the others are told
            local s = db:append("from " .. i)
            assert.is_true(s >= n)
            assert.same("from " .. i, db:get(s))
            order[#order + 1] = "after " .. i
          end
        end)
      end
      flume.run()
      local told, seen = {}, {}
      for _, v in ipairs(order) do
        if type(v) == "number" then
          assert.is_nil(seen[v], "callback " .. v .. " ran twice")
          seen[v] = true
          told[#told + 1] = v
        end
      end
      assert.equal(n, #told)
      for k = 1, n do assert.equal(k, told[k]) end
      -- a waiting callback resumed only after later ones ran
      local pos = {}
      for k, v in ipairs(order) do pos[v] = k end
      assert.is_true(pos["after 3"] > pos[4])
      assert.is_true(pos["after 150"] > pos[151])
      assert.is_not_nil(pos["after 300"])
      assert.equal(n + 2, db.since)
    end)

    it("all run, in order, when several callbacks of a run raise", function()
      local db, n, called = ctx.db, 50, {}
      for i = 1, n do
        db:append(i, function()
          called[#called + 1] = i
          if i % 10 == 0 then error("boom " .. i) end
        end)
      end
      -- the first is raised where the loop runs; every callback still ran
      assert.error_matches(function() flume.run() end, "boom 10\n")
      flume.run()
      assert.equal(n, #called)
      for k = 1, n do assert.equal(k, called[k]) end
    end)

    it("reach the database whose table is passed, in every form", function()
      -- db.append is a C closure of db's table for the common async call;
      -- every other form goes through the checked Lua method
      local db, other = ctx.db, flume.open()
      local got = {}
      local function note(err, seq) got[#got + 1] = err or seq end
      db:append("a", note)
      db.append(db, "b", note)
      other.append(db, "c", note)      -- db's table: db's log
      db:append("d", {}, note)         -- options: the Lua method
      flume.spawn(function()
        local seq = db:append("e")
        got[#got + 1] = seq
      end)
      flume.run()
      assert.same({ 0, 1, 2, 3, 4 }, got)
      assert.same({ "a", "b", "c", "d", "e" }, values(db))
      assert.equal(-1, other.since)
      -- misuse names the caller's line, as the Lua method does
      local ok, err = pcall(function() db.append(5, 1) end)
      assert.is_false(ok)
      assert.matches("append_runs_spec.lua:%d+: bad argument #1 to 'append'",
        err)
      assert.error_matches(function() db:append(nil, note) end, "EINVAL")
      assert.error_matches(function() db:append(1, {}, 5) end, "EINVAL")
      other:close()
      db:close()
      assert.error_matches(function() db:append(1, note) end, "ECLOSED")
    end)

    it("are all written and told before a close completes", function()
      local db, dir = H.open(backend)
      local n, acked, closed = 1000, 0, false
      for i = 1, n do
        db:append(i, function(err, seq)
          assert.is_nil(err)
          assert.is_false(closed)
          assert.equal(i - 1, seq)
          acked = acked + 1
        end)
      end
      db:close(function() closed = true end)
      flume.run()
      assert.is_true(closed)
      assert.equal(n, acked)
      if dir then
        local again = flume.open(dir)
        assert.equal(n - 1, again.since)
        again:close()
      end
      if dir then H.rm(dir:match("(.*)/db$")) end
    end)
  end)
end
