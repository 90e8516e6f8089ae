-- What a newcomer met in a first hour with flume: a drop beside a
-- progress subscription, calls that ignored arguments, async forms that
-- raised, errors that were not flume's, nil appended to the log.
local flume = require "flume"
local H = require "helpers.db"

local SUM = [[
-- the sum of the values' n
return { version = 1, initial = 0,
  reduce = function(acc, v) return acc + v.n end }]]

local function ename(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return flume.errors.name(err), err
end

for _, backend in ipairs(H.backends) do
  describe("newcomer on " .. backend, function()
    local ctx = H.fresh(backend, { ready = false })
    before_each(ctx.setup)
    after_each(ctx.teardown)

    it("ends an on_progress subscription when its view is dropped",
      function()
        local db = ctx.db
        db:use("sum", SUM)
        db:append({ n = 1 })
        -- the indexer is paused: the view stays behind, the poll goes on
        local heard = 0
        db.sum:on_progress(function() heard = heard + 1 end, 0.001)
        flume.sleep(0.01)
        assert.is_true(heard > 0)
        db:drop("sum")
        local after = heard
        flume.sleep(0.02)
        assert.equal(after, heard)
        assert.is_nil(db.sum)
        assert.equal(0, #db:views())
      end)
  end)
end
