-- A luv program with flume on luv's own loop (flume.luv's shared mode),
-- for luv_spec: a luv timer appending with the async form, a TCP echo
-- server and client, flume.spawn with sync forms, a sync call inside a luv
-- callback (EBUSY), all on one uv.run() that ends by itself. Prints "ok"
-- and a summary; a database left open and a pending flume.sleep are
-- closed by lua_close, on luv's loop, before luv closes that loop.
local dir = assert(arg[1], "usage: luv_child.lua DIR")
local uv = require "luv"
local echo_on = require "spec.helpers.luv_echo"
local flume = require "flume"
local stop, mode = require("flume.luv").attach(uv)
assert(mode == "shared", "attach chose " .. tostring(mode))
assert(require("flume.core").shared())

local db = flume.open(dir .. "/db")
db:use("count", [[return { version = 1, initial = 0,
  reduce = function(n) return n + 1 end }]])
local left_open = flume.open(nil) -- lua_close closes it
left_open:append({ x = 1 })

-- a TCP echo server and a client sending 50 lines
local echo = echo_on(uv)

-- a luv timer appending with the async form; the first tick also tries
-- a sync call, which must raise EBUSY there rather than run the loop
local ticks, acked, busy = 0, 0, nil
local timer = uv.new_timer()
timer:start(1, 1, function()
  ticks = ticks + 1
  if ticks == 1 then
    local ok, e = pcall(function() return db.count:get() end)
    busy = not ok and tostring(e) or "no error"
  end
  if ticks <= 100 then
    db:append({ tick = ticks }, function(err)
      assert(not err, err)
      acked = acked + 1
    end)
  else
    timer:close()
  end
end)

-- sync forms inside a flume.spawn coroutine, started from luv
local spawned_done, got
uv.new_timer():start(5, 0, function()
  flume.spawn(function()
    for i = 1, 20 do db:append({ spawned = i }) end
    flume.sleep(0.01)
    got = db.count:get()
    spawned_done = true
  end)
end)

-- the end: everything done (or 30 s), then luv's handles closed; flume
-- keeps nothing alive, so uv.run() returns
local watch = uv.new_timer()
local deadline = uv.now() + 30000
local finished = false
watch:start(10, 10, function()
  local all = echo.done() and acked == 100 and
    spawned_done
  if all or uv.now() > deadline then
    finished = all
    watch:close()
    if not timer:is_closing() then timer:close() end
    echo.close()
  end
end)
uv.run()
stop()
assert(finished, ("echoed %d, acked %d, spawned %s"):format(#echo.echoed, acked,
  tostring(spawned_done)))
assert(echo.echoed == echo.sent())
assert(busy:find("EBUSY", 1, true), busy)
assert(got >= 20)
-- a sync form at top level runs the shared loop
assert(db.count:get() == 120, tostring(db.count:get()))
db:close()
-- left for lua_close to cancel, on luv's loop, before luv closes it
flume.sleep(3600, function() end)
print("ok", mode, acked, got)
