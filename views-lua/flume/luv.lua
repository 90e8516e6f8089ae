--- flume on a luv program's event loop: one `uv.run()` drives both.
--
--   local uv = require "luv"
--   local flume = require "flume"
--   local stop = require("flume.luv").attach(uv)
--   -- ... flume's async calls, or flume.spawn(function() ... end) for the
--   -- sync forms, beside luv's timers, sockets and processes
--   uv.run()
--
-- flume keeps its own libuv loop; luv polls that loop's fd (readable when
-- flume has something to do) and a timer for flume's next timer, and steps
-- flume when either fires. Inside luv's callbacks use flume's async forms,
-- or flume.spawn: a sync call there would have to run the loop that is
-- already running. `stop()` detaches, so that uv.run() can end.
local flume = require "flume"

local M = {}

function M.attach(uv)
  local poll = uv.new_poll(flume.fd())
  local timer = uv.new_timer()
  local stopped = false
  local function step()
    if stopped then return end
    flume.step()
    -- flume's next timer, again after every step
    local t = flume.timeout()
    timer:stop()
    if t then timer:start(math.ceil(t * 1000), 0, step) end
  end
  poll:start("r", function(err)
    if err then error("flume.luv: " .. tostring(err)) end
    step()
  end)
  step()
  return function()
    if stopped then return end
    stopped = true
    poll:stop()
    timer:stop()
    poll:close()
    timer:close()
  end
end

return M
