-- Reads of a view with `after = seq`: wait until the view has indexed a
-- seq that an append returned elsewhere (a coroutine, a writer process,
-- another node of a remote log), even one the log has not reached yet;
-- on both backends, and on a read-only handle beside a writer process.
local flume = require "flume"
local H = require "helpers.db"

local COUNT = [[return { version = 1, initial = 0,
  reduce = function(n) return n + 1 end }]]
local BY_K = [[return { version = 1,
  map = function(v) return v.k % 3, 1 end,
  reduce = function(n, one) return (n or 0) + one end }]]

for _, backend in ipairs(H.backends) do
  describe("after = seq on " .. backend, function()
    local ctx = H.fresh(backend)
    before_each(ctx.setup)
    after_each(ctx.teardown)

    it("waits for a seq the log has not reached, then reads it", function()
      local db = ctx.db
      db:use("count", COUNT)
      db:use("by_k", BY_K)
      local seq = db:append({ k = 0 })
      -- nobody appends: the wait runs out, naming the seq
      H.raises(function() db.count:get { after = seq + 3, timeout = 0.05 } end,
        "ETIMEDOUT.*view 'count' to reach seq " .. (seq + 3))
      -- appended a little later: the read waits for it and sees it
      flume.spawn(function()
        flume.sleep(0.02)
        for k = 1, 3 do db:append({ k = k }) end
      end)
      assert.equal(seq + 4, db.count:get { after = seq + 3, timeout = 10 })
      local total = 0
      for _, n in db.by_k:read { after = seq + 3 } do total = total + n end
      assert.equal(4, total)
      -- a seq already indexed: no wait
      assert.equal(seq + 4, db.count:get { after = 0 })
      -- async form
      local got
      db.count:get({ after = seq + 4, timeout = 10 }, function(err, n)
        got = err or n
      end)
      db:append({ k = 4 })
      while got == nil do flume.sleep(0.01) end
      assert.equal(seq + 5, got)
    end)

    it("refuses what is not a seq, and after with wait = false", function()
      local db = ctx.db
      db:use("count", COUNT)
      for _, bad in ipairs { 1.5, "3", -2, true } do
        H.raises(function() db.count:get { after = bad } end,
          "^flume: EINVAL: invalid argument: after must be a seq")
      end
      H.raises(function() db.count:get { after = 3, wait = false } end,
        "^flume: EINVAL: invalid argument: after .* contradict")
      H.raises(function() db.count:get { aftr = 3 } end,
        "did you mean 'after'")
    end)
  end)
end

describe("after = seq on a read-only handle", function()
  it("waits for the writer process to commit and index that seq",
    function()
      local tmp = H.tmpdir()
      local dir = tmp .. "/db"
      local w = flume.open(dir)
      w:use("count", COUNT)
      w:append({ k = 0 })
      w:close()
      -- the writer appends 20 more, one every 10 ms, keeping count
      H.write(tmp .. "/writer.lua", [[
        local flume = require "flume"
        local db = flume.open(arg[1])
        db:use("count", arg[2])
        for k = 1, 20 do db:append({ k = k }) flume.sleep(0.01) end
        db.count:ready()
        db:close()
      ]])
      H.write(tmp .. "/count.lua", COUNT)
      local r = flume.open(dir, { readonly = true })
      local count = r:view("count")
      local p = io.popen(H.lua_command(tmp .. "/writer.lua", dir,
        tmp .. "/count.lua") .. " 2>&1")
      -- once the writer runs (a read with no writer fails at once)...
      local t = os.time()
      while r.since < 1 and os.time() - t < 30 do flume.sleep(0.005) end
      -- ...seq 20, its last, is waited for: committed and indexed in the
      -- other process
      assert.equal(21, count:get { after = 20, timeout = 30 })
      assert.is_true(r.since >= 20)
      local out = p:read("a")
      assert.is_true(p:close(), out)
      r:close()
      H.rm(tmp)
    end)
end)
