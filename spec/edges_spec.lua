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
  end)
end
