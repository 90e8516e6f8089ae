--- flume on a luv program's event loop: one `uv.run()` drives both.
--
--   local uv = require "luv"
--   local flume = require "flume"
--   require("flume.luv").attach(uv)
--   -- ... flume's async calls, or flume.spawn(function() ... end) for the
--   -- sync forms, beside luv's timers, sockets and processes
--   uv.run()
--
-- The bridge (attach): flume keeps its own libuv loop and luv drives it
-- through flume.fd/step/timeout. Before luv waits (a prepare handle) and
-- after its callbacks ran (a check handle) the bridge asks flume what it
-- needs: nothing (then it keeps nothing of luv's alive, and uv.run() can
-- end), its fd watched (a poll), or a step by a deadline (a timer). The
-- timer is armed there, never from its own callback: libuv 1.44 runs a
-- 0 ms timer started in a timer callback again in the same pass, forever.
--
-- Inside luv's callbacks use flume's async forms, or flume.spawn: a sync
-- call there would have to run the loop that is already running, and
-- raises EBUSY.
local flume = require "flume"

local M = {}

--- Lets luv's `uv.run()` drive flume too. Returns a function that detaches
-- flume (idempotent); without it uv.run() still ends once neither luv nor
-- flume has work left.
function M.attach(uv)
  local poll = uv.new_poll(flume.fd())
  local timer = uv.new_timer()
  local prepare, check = uv.new_prepare(), uv.new_check()
  local polling, stopped = false, false
  local function step()
    if not stopped then flume.step() end
  end
  -- What flume needs now; keeps luv alive (the poll, the timer) only
  -- while flume has work.
  local function arm()
    if stopped then return end
    local t = flume.timeout()
    timer:stop()
    if t == nil then
      if polling then
        poll:stop()
        polling = false
      end
      return
    end
    if not polling then
      poll:start("r", function(err)
        if err then error("flume.luv: " .. tostring(err)) end
        step()
      end)
      polling = true
    end
    if t ~= math.huge then timer:start(math.ceil(t * 1000), 0, step) end
  end
  prepare:start(arm)
  check:start(arm)
  prepare:unref()
  check:unref()
  arm()
  return function()
    if stopped then return end
    stopped = true
    for _, h in ipairs { poll, timer, prepare, check } do
      if not h:is_closing() then h:close() end
    end
  end
end

return M
