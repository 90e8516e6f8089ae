--- flume's scheduler: how a call that can wait waits.
--
-- Every callback flume calls runs in a coroutine flume drives (a pooled
-- one: a coroutine is reused once its job ends). A sync-form call made
-- there yields, and the call's completion resumes it; at top level it
-- runs the event loop until the call is done; anywhere else (a coroutine
-- of your own while the loop is running) it raises, because the loop is
-- never re-entered. A callback's error stops the loop and is raised where
-- the loop was run.
--
-- This module holds that machinery (await), the loop (run), coroutines
-- (spawn), sleep, and the async forms of sync calls and iterations
-- (later, batches). It requires flume.core, flume.errors and
-- flume.options only.
local core = require "flume.core"
local errors = require "flume.errors"
local options = require "flume.options"

local coroutine, error, type, select = coroutine, error, type, select
local running, resume, yield = coroutine.running, coroutine.resume,
  coroutine.yield

local raise = errors.raise

local M = {}

-- Coroutines ------------------------------------------------------------------

local driven = setmetatable({}, { __mode = "k" }) -- coroutines flume drives
local direct = setmetatable({}, { __mode = "k" }) -- callbacks run in place
local pool = {}                                   -- idle driven coroutines
local IDLE = {}                                   -- yielded when a job ends
local pending_error                               -- first callback error

local function body(fn, a, b, c)
  while true do
    fn(a, b, c)
    fn, a, b, c = yield(IDLE)
  end
end

-- Looks at what a driven coroutine did when resumed.
local function after_resume(co, ok, res)
  if ok then
    if res == IDLE then pool[#pool + 1] = co end
    -- anything else: it waits inside a sync call, whose completion resumes it
    return
  end
  driven[co] = nil
  local msg = debug.traceback(co, tostring(res))
  if not core.running() then error(msg, 0) end
  if pending_error == nil then pending_error = msg end
  core.stop()
end

local function spawn3(fn, a, b, c)
  local co = pool[#pool]
  if co then
    pool[#pool] = nil
  else
    co = coroutine.create(body)
    driven[co] = true
  end
  after_resume(co, resume(co, fn, a, b, c))
end

-- A stretch of append callbacks with one outcome runs in one coroutine, in
-- order, as long as none of them waits: the one that waits keeps it, and a
-- fresh one takes over the rest (the stretch's `owner`). Resuming a
-- coroutine per callback cost more than the callbacks of a fast writer.
local function run_stretch(s)
  local co, fifo, last, err, base = running(), s.fifo, s.last, s.err, s.base
  local k = s.k
  while k <= last do
    s.k = k + 1 -- before the call: one that waits or fails is not called again
    local fn = fifo[k]
    if fn ~= nil then
      fifo[k] = nil
      if err ~= nil then fn(err, nil) else fn(nil, base + k) end
      if s.owner ~= co then return end -- it waited: the rest went on
    end
    k = s.k
  end
end

local function stretch(fifo, from, n, err, first)
  local s = { fifo = fifo, k = from, last = from + n - 1, err = err,
    base = first - from, owner = nil }
  while s.k <= s.last do
    local co = pool[#pool]
    if co then
      pool[#pool] = nil
    else
      co = coroutine.create(body)
      driven[co] = true
    end
    s.owner = co
    after_resume(co, resume(co, run_stretch, s))
  end
end

core.set_dispatch(function(fn, a, b, c)
  if direct[fn] then return fn(a, b, c) end
  spawn3(fn, a, b, c)
end, stretch)

local function raise_pending()
  local e = pending_error
  if e ~= nil then
    pending_error = nil
    error(e, 0)
  end
end

--- Marks `fn` as a callback the dispatcher runs in place, in the coroutine
-- that resumes it (not in a driven coroutine of its own); returns it.
function M.inline(fn)
  direct[fn] = true
  return fn
end

--- Whether a sync-form call may wait here.
function M.can_wait()
  return driven[running()] or not core.running()
end

--- Runs `start(k)`, which begins an asynchronous operation whose completion
-- calls `k(err, result)`, and waits for it: by yielding inside a driven
-- coroutine, or by running the loop at top level. If `start` returns true,
-- the operation was already done and `k` will not be called.
function M.await(start)
  local co = running()
  if driven[co] then
    local k = function(err, res) after_resume(co, resume(co, err, res)) end
    direct[k] = true
    if start(k) == true then return end
    return yield()
  end
  if core.running() then
    raise("EBUSY", "cannot wait here: this code runs while the event " ..
      "loop runs, outside a coroutine flume drives; pass a callback (the " ..
      "async form) or call it inside flume.spawn")
  end
  local done, e, r = false, nil, nil
  local k = function(err, res) done, e, r = true, err, res end
  direct[k] = true
  if start(k) == true then return end
  while not done do
    core.run("once")
    raise_pending()
  end
  return e, r
end

--- Runs the event loop until no work is left (the async style's main loop).
-- Errors raised by callbacks stop the loop and are raised here.
function M.run()
  if core.running() then
    raise("EBUSY", "cannot run the loop from inside a callback")
  end
  repeat
    local more = core.run("default")
    raise_pending()
  until not more
end

--- One turn of the loop without waiting, for a program whose own event
-- loop drives flume's (see M.fd): runs what is ready, raises what a
-- callback raised; returns true while flume has work left.
function M.step()
  -- core.run raises EBUSY inside flume's callbacks; the other loop's
  -- callbacks are where this is meant to be called
  local more = core.run("nowait")
  raise_pending()
  return more
end

--- The fd another event loop polls for readability: when it is readable,
-- or M.timeout() has passed, call M.step().
function M.fd() return core.backend_fd() end

--- Seconds until M.step() is due even with the fd quiet (nil: none).
function M.timeout() return core.backend_timeout() end

--- Runs `fn(...)` in a coroutine flume drives, in which sync-form calls
-- yield instead of blocking. It runs at once until its first wait.
function M.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (function expected)", 2)
  end
  local n, args = select("#", ...), { ... }
  spawn3(function() fn(table.unpack(args, 1, n)) end)
end

--- Sleeps for `seconds` (sync form), or calls `cb()` after them.
function M.sleep(seconds, cb)
  if type(seconds) ~= "number" or not (seconds >= 0) then
    raise("EINVAL", "sleep takes a number of seconds >= 0 " ..
      "(math.huge: forever), not " .. (type(seconds) == "number" and
      tostring(seconds) or "a " .. type(seconds)))
  end
  options.check_cb(cb, "sleep")
  if cb then
    core.timer(seconds, cb)
    return
  end
  M.await(function(k) core.timer(seconds, function() k() end) end)
end

local CB_FAILED = {} -- raised through an iteration when its callback raised

--- The async form of an iteration. In a coroutine flume drives it runs
-- `make_iter()` and passes its entries, each made by `pack(...)`, as a list
-- to `cb(nil, list)`: once, or for a live iteration once with what is there
-- and again with each batch of new entries (`hooks.flush`, which the
-- iterator calls before it waits, delivers them); `cb(err)` once on an
-- error. Returns a function that stops it (`cb` is not called again).
function M.batches(make_iter, pack, live, cb, hooks)
  local stopped, batch, failed, first = false, {}, nil, true
  local function deliver()
    local b = batch
    batch, first = {}, false
    local ok, e = pcall(cb, nil, b)
    if not ok then
      failed = e
      error(CB_FAILED)
    end
    return stopped
  end
  hooks.flush = live and function()
    if stopped then return true end
    -- the first delivery comes even when empty: the range is read, what
    -- comes next is new
    if #batch > 0 or first then return deliver() end
  end or nil
  core.timer(0, function()
    if stopped then return end
    local ok, err = pcall(function()
      local it = make_iter()
      while true do
        local a, b, c = it()
        if a == nil or stopped then break end
        batch[#batch + 1] = pack(a, b, c)
      end
      if not stopped and (not live or #batch > 0) then deliver() end
    end)
    if failed ~= nil then error(failed, 0) end
    if not ok and not stopped then cb(err) end
  end)
  return function() stopped = true end
end

--- Runs `fn()` later in a coroutine flume drives (where sync calls yield)
-- and passes its result to `cb(err, result)`: the async form of a sync
-- call. `cb` is never called before the call that asks for it returns.
function M.later(fn, cb)
  core.timer(0, function()
    local ok, res = pcall(fn)
    if ok then return cb(nil, res) end
    cb(res)
  end)
end

return M
