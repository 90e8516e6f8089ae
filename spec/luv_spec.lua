-- flume inside a luv program: luv's uv.run() drives flume too, beside a
-- luv timer and a TCP echo server and client on 127.0.0.1, all at once;
-- flume's async calls and its sync forms in flume.spawn coroutines both
-- work, a sync call in a luv callback raises EBUSY, and uv.run() ends once
-- everything is stopped. Both ways of flume.luv: the bridge (flume's own
-- loop, stepped through flume.fd/step/timeout) in this process, and the
-- shared loop (flume's handles on luv's loop) in a child, since sharing
-- is for the rest of a process's life.
local flume = require "flume"
local H = require "spec.helpers.db"
local echo_on = require "spec.helpers.luv_echo"

local ok_luv, uv = pcall(require, "luv")

describe("flume in a luv program", function()
  it("runs on uv.run() beside timers and a TCP echo server", function()
    assert(ok_luv, "lua-luv is needed (apt-get install lua-luv)")
    local tmp = H.tmpdir()
    local db = flume.open(tmp .. "/db")
    db:use("count", [[return { version = 1, initial = 0,
      reduce = function(n) return n + 1 end }]])
    local detach = require("flume.luv").bridge(uv)

    -- a TCP echo server and a client sending 50 lines
    local echo = echo_on(uv)

    -- a luv timer appending to flume with the async form
    local ticks, acked = 0, 0
    local timer = uv.new_timer()
    timer:start(1, 1, function()
      ticks = ticks + 1
      if ticks <= 100 then
        db:append({ tick = ticks }, function(err)
          assert(not err, err)
          acked = acked + 1
        end)
      end
    end)

    -- sync forms inside a flume.spawn coroutine, started from luv
    local spawned_done, got
    uv.new_timer():start(5, 0, function()
      flume.spawn(function()
        for i = 1, 20 do db:append({ spawned = i }) end
        flume.sleep(0.01)
        got = db.count:get() -- gated: waits for the view
        spawned_done = true
      end)
    end)

    -- the end: everything done, then every handle stopped
    local finished = false
    local watch = uv.new_timer()
    local deadline = uv.now() + 30000
    watch:start(10, 10, function()
      local all = echo.done() and acked == 100 and
        spawned_done
      if all or uv.now() > deadline then
        finished = all
        watch:close()
        timer:close()
        echo.close()
        detach()
      end
    end)
    uv.run()
    assert.is_true(finished, ("echoed %d, acked %d, spawned %s"):format(
      #echo.echoed, acked, tostring(spawned_done)))
    assert.equal(echo.sent(), echo.echoed)
    assert.is_true(got >= 20) -- what was in the log when it read
    assert.equal(120, db.count:get())
    db:close()
    H.rm(tmp)
  end)

  it("ends uv.run() by itself once neither luv nor flume has work left",
    function()
      assert(ok_luv, "lua-luv is needed (apt-get install lua-luv)")
      -- an in-memory database: its appends wake flume's loop through an
      -- idle handle, not through its fd, so only asking flume before luv
      -- waits finds them
      local db = flume.open(nil)
      require("flume.luv").bridge(uv) -- never detached
      local acked, fired = 0, 0
      local timer = uv.new_timer()
      timer:start(1, 1, function()
        fired = fired + 1
        db:append({ n = fired }, function(err)
          assert(not err, err)
          acked = acked + 1
        end)
        if fired == 20 then timer:close() end
      end)
      uv.run()
      assert.equal(20, acked)
      assert.equal(20, db.since + 1)
      db:close()
    end)

  it("raises EBUSY for a sync call inside a luv callback", function()
    assert(ok_luv, "lua-luv is needed (apt-get install lua-luv)")
    local db = flume.open(nil)
    db:append({ x = 1 })
    local detach = require("flume.luv").bridge(uv)
    local err, appended
    local t = uv.new_timer()
    t:start(1, 0, function()
      t:close()
      local ok, e = pcall(function() return db:append({ x = 2 }) end)
      err = not ok and tostring(e) or "returned"
      -- the async form is fine there
      db:append({ x = 3 }, function(e2, seq) appended = e2 or seq end)
    end)
    uv.run()
    detach()
    assert.matches("EBUSY", err)
    assert.equal(1, appended)
    db:close()
  end)

  it("shares luv's own loop when nothing of flume's is open yet", function()
    assert(ok_luv, "lua-luv is needed (apt-get install lua-luv)")
    local tmp = H.tmpdir()
    -- in a child: a shared loop is shared until the process ends
    -- (timeout bounds a hang: the child has a 30 s deadline of its own)
    local p = io.popen("timeout 120 " ..
      H.lua_command("spec/helpers/luv_child.lua", tmp) .. " 2>&1")
    local out = p:read("a")
    local ok, _, code = p:close()
    code = ok and 0 or code
    H.rm(tmp)
    assert.equal(0, code, out)
    assert.matches("^ok\tshared\t100\t", out)
  end)

  it("refuses to share luv's loop once a database is open", function()
    assert(ok_luv, "lua-luv is needed (apt-get install lua-luv)")
    local db = flume.open(nil)
    local ok, e = pcall(require("flume.luv").share, uv)
    db:close()
    assert.is_false(ok)
    assert.matches("EBUSY: busy: flume's loop has handles already", e)
    assert.is_false(require("flume.core").shared())
  end)

  it("says when flume has nothing to do: flume.timeout() is nil", function()
    -- a 0 here made a driving loop step in a circle that never waited
    local db = flume.open(nil)
    flume.run()
    assert.is_nil(flume.timeout())
    db:append({ x = 1 }, function() end)
    local t = flume.timeout()
    assert.is_true(t ~= nil and t >= 0, tostring(t))
    flume.run()
    assert.is_nil(flume.timeout())
    db:close()
  end)

  it("is stepped by any loop through flume.fd, flume.timeout, flume.step",
    function()
      -- the smallest foreign loop: wait for flume's timeout, step
      local db = flume.open(nil)
      local acked = 0
      for i = 1, 10 do
        db:append({ i = i }, function(err)
          assert(not err, err)
          acked = acked + 1
        end)
      end
      assert.is_true(math.type(flume.fd()) == "integer" and flume.fd() >= 0)
      -- a loop of its own: sleeps (never runs flume's), steps flume
      local tools = require "flume.tools"
      local steps = 0
      while acked < 10 and steps < 10000 do
        flume.step()
        steps = steps + 1
        local t = flume.timeout()
        tools.sleep(math.min(t or 0.001, 0.001))
      end
      assert.equal(10, acked)
      db:close()
    end)
end)
