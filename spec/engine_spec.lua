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
