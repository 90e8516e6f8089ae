--- flume on a luv program's event loop: one `uv.run()` drives both.
--
--   local uv = require "luv"
--   local flume = require "flume"
--   require("flume.luv").attach(uv) -- before opening any database
--   -- ... flume's async calls, or flume.spawn(function() ... end) for the
--   -- sync forms, beside luv's timers, sockets and processes
--   uv.run()
--
-- Two ways, attach picks the first that works:
--
-- Shared (share): flume's handles live on luv's own loop (core.share_loop
-- says what that takes: the same libuv, nothing of flume's open yet).
-- flume's sync forms at top level run that loop, so luv's callbacks run
-- there too.
--
-- The bridge: flume keeps its own libuv loop and luv drives it through
-- flume.fd/step/timeout. Before luv waits (a prepare handle) and after
-- its callbacks ran (a check handle) the bridge asks flume what it needs:
-- nothing (then it keeps nothing of luv's alive, and uv.run() can end),
-- its fd watched (a poll), or a step by a deadline (a timer). The timer is
-- armed there, never from its own callback: libuv 1.44 runs a 0 ms timer
-- started in a timer callback again in the same pass, forever.
--
-- Either way, inside luv's callbacks use flume's async forms, or
-- flume.spawn: a sync call there would have to run the loop that is
-- already running, and raises EBUSY.
local core = require "flume.core"
local flume = require "flume"

local M = {}

--- Puts flume's handles on luv's loop. Raises EBUSY once flume has a
-- database or a timer (share first), EINVAL when luv runs on another copy
-- of libuv than flume (the bridge still works then).
function M.share(uv)
  core.share_loop(uv)
end

local parked = {} -- handles of bridges detached outside uv.run()

local function bridge(uv)
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
  core.foreign(uv.loop_mode) -- sync calls in luv's callbacks raise EBUSY
  arm()
  return function()
    if stopped then return end
    stopped = true
    core.foreign(nil)
    local inside = uv.loop_mode() ~= nil
    for _, h in ipairs { poll, timer, prepare, check } do
      if inside then
        h:close()
      else
        -- A handle closed outside uv.run() whose close never finishes
        -- (no uv.run() after it) crashes luv 1.44 at lua_close; stopped
        -- and kept, luv closes it then like any other.
        h:stop()
        h:unref()
        parked[#parked + 1] = h
      end
    end
  end
end

local function nothing() end

--- Lets luv's `uv.run()` drive flume too: shares luv's loop if it can
-- (called before any database is open, with the same libuv), else
-- bridges the two loops. Returns a function that detaches flume (once
-- shared: nothing to undo), and "shared" or "bridge". Either way uv.run()
-- ends once neither luv nor flume has work left.
function M.attach(uv)
  if core.shared() or pcall(core.share_loop, uv) then
    return nothing, "shared"
  end
  return bridge(uv), "bridge"
end

--- Bridges flume's own loop to luv's (the fallback of attach), even where
-- it could share. Returns the function that detaches it.
function M.bridge(uv)
  return bridge(uv)
end

return M
