--- flume's views: the object `db:use` mounts at db[name].
--
-- A view reads since-gated: a call waits until the view has caught up with
-- the log as it was when the call was made (`wait = false`: it does not).
-- Each call that can wait has the two forms of flume (see init.lua), and
-- the methods a script defines are methods of its view. This module
-- requires flume.core and the errors, scheduler and options modules, not
-- flume:
-- what a view needs of its database (values of the log, their codec and
-- mapper, since observers) it asks the database object it holds.
local core = require "flume.core"
local errors = require "flume.errors"
local scheduler = require "flume.scheduler"
local options = require "flume.options"

local error, type, select = error, type, select
local raise = errors.raise
local await, later, batches = scheduler.await, scheduler.later,
  scheduler.batches
local check_opts, check_cb = options.check_opts, options.check_cb
local opt_limit, check_timeout = options.opt_limit, options.check_timeout
local maxinteger = math.maxinteger

local M = {}

local View = {}
local View_mt = { __name = "flume.view" }

local function view_info(view)
  return view._db._c:view_info(view._name)
end

View_mt.__index = function(view, k)
  if k == "since" then
    local info = view_info(view)
    if info == nil then
      raise("ENOTFOUND", "view '" .. view._name .. "' was dropped")
    end
    return info.since
  end
  local m = View[k]
  if m then return m end
  local kind = view._methods[k]
  if kind then
    local f = function(self, ...) return view:_call(k, kind, ...) end
    rawset(view, k, f)
    return f
  end
end
View_mt.__tostring = function(view)
  return "flume.view (" .. view._name .. ")"
end

local function explain_wait_error(view, err, target)
  if errors.is(err, "ENOWRITER") then
    local info = view_info(view)
    if info and info.note then return err .. ": " .. info.note end
  elseif errors.is(err, "EVIEW") then
    local info = view_info(view)
    if info and info.error then return info.error end
    -- a reader's view: its writer's copy failed
    if info and info.note then return "flume: EVIEW: " .. info.note end
  elseif errors.is(err, "ETIMEDOUT") then
    local info = view_info(view)
    return string.format("%s waiting for view '%s' to reach seq %d (it is " ..
      "at %d)", err, view._name, target, info and info.since or -1)
  end
  return err
end

--- The log since a gated read waits for (since-gating: as it is at the
-- moment of the call, or `after` when that is further: a seq returned by
-- an append elsewhere, another process's or another node's), or -1 with
-- `wait = false`.
local function gate_target(view, opts)
  check_timeout(opts and opts.timeout)
  local after = opts and opts.after
  if after ~= nil and (math.type(after) ~= "integer" or after < -1) then
    raise("EINVAL", "after must be a seq (an integer >= -1), not " ..
      tostring(after))
  end
  local fresh = opts and opts.fresh
  if fresh ~= nil and type(fresh) ~= "boolean" then
    raise("EINVAL", "fresh must be a boolean, not " .. tostring(fresh))
  end
  if opts ~= nil and opts.wait == false then
    if after ~= nil then
      raise("EINVAL", "after (wait for a seq) and wait = false (do not " ..
        "wait) contradict each other")
    end
    if fresh then
      raise("EINVAL", "fresh (wait for what the stream holds) and wait = " ..
        "false (do not wait) contradict each other")
    end
    return -1
  end
  local since = view._db._c:since()
  if after ~= nil and after > since then return after end
  return since
end

--- Waits until the view has reached `target` (see gate_target). opts:
-- timeout = seconds; fresh = true first waits until this node holds what
-- the remote log's stream holds now (its since then, if further).
local function gate(view, opts, target)
  local c = view._db._c
  target = target or gate_target(view, opts)
  local timeout = check_timeout(opts and opts.timeout)
  if opts and opts.fresh then
    -- What the stream's leader holds now, stored here: the log's since
    -- then (a local log's since now: a plain gated read).
    local err, since = await(function(k) c:remote_fresh(k) end)
    if err then error(err, 0) end
    if since > target then target = since end
  end
  local err = await(function(k)
    return c:view_wait(view._name, target, timeout, k)
  end)
  if err then error(explain_wait_error(view, err, target), 0) end
end

local function check_view(view, name)
  if getmetatable(view) ~= View_mt then
    error("bad argument #1 to '" .. name ..
      "' (flume.view expected; call it as view:" .. name .. "(...))", 3)
  end
  if view._db._c:closed() then
    raise("ECLOSED")
  end
end

--- The view's value (since-gated). A reduce view: `get([opts][, cb])`
-- gives its state. A group view: `get(key [, opts][, cb])` gives key's
-- accumulator (nil if none). An index view: `get(key [, opts][, cb])`
-- gives the list of values indexed under key, in seq order. opts: wait =
-- false (do not wait), timeout = seconds. Async form: `cb(err, value)`.
function View:get(key, opts, cb)
  check_view(self, "get")
  local c, kind = self._db._c, self._kind
  if kind == "reduce" then
    if cb ~= nil then
      raise("EINVAL", "a reduce view's get takes only options and a " ..
        "callback: get([opts][, cb])")
    end
    if type(key) == "function" and opts == nil then key, opts = nil, key end
    key, opts, cb = nil, key, opts
  elseif type(opts) == "function" and cb == nil then
    opts, cb = nil, opts
  end
  check_opts(opts, "get")
  check_cb(cb, "get")
  local target = gate_target(self, opts)
  local function run()
    gate(self, opts, target)
    if kind == "reduce" then return c:view_get(self._name) end
    local got = c:view_get(self._name, key)
    if kind == "group" then return got end
    local db, values = self._db, {}
    for i = 1, #got do values[i] = db:get(got[i]) end
    return values
  end
  if cb then return later(run, cb) end
  return run()
end

local READ_CHUNK = 256

--- The iterator of View:read. `hooks.flush` (async form) is called before
-- each wait for new entries of a live read.
local function read_iter(self, opts, target, hooks)
  local c, name, kind, db = self._db._c, self._name, self._kind, self._db
  gate(self, opts, target)
  local lo, lo_incl = opts.gte, true
  if lo == nil and opts.gt ~= nil then lo, lo_incl = opts.gt, false end
  local hi, hi_incl = opts.lte, true
  if hi == nil and opts.lt ~= nil then hi, hi_incl = opts.lt, false end
  local reverse, live = opts.reverse and true or false, opts.live
  local remaining = opt_limit(opts)
  if not live and not M.lua_reads then
    -- One C iterator walks the range, chunk by chunk, each entry decoded
    -- straight onto the stack (flume.core's view_iter).
    local it = c:view_iter(name, lo, lo_incl, hi, hi_incl, reverse,
      remaining, db._mp)
    if kind ~= "index" or (db._decode == nil and db._mapper == nil) then
      return it
    end
    return function()
      local key, seq, value = it()
      if key == nil then return nil end
      return key, seq, db:_finish(value, seq)
    end
  end
  local incremental, on_step = not M.full_reread, M.on_step
  -- From now on the view keeps a journal of what its checkpoints change,
  -- for this read's steps after its first pass.
  if live and incremental then c:view_journal_on(name) end

  -- One pass over the range, in chunks, each a short read transaction.
  -- An index entry's value comes from the log: a chunk's values are read
  -- together, in one read transaction.
  local index, mp, plain = kind == "index", db._mp,
    db._decode == nil and db._mapper == nil
  -- A pass sees the view at one since, `high`: its first chunk's (a read
  -- brings the view's since up to the state it saw); index entries
  -- committed later are skipped by its other chunks, and come in the next
  -- step. A live read delivers a step's entries from `low` to `high`, then
  -- waits for the view to pass `pass_since`, the highest it has delivered.
  local low, high, pass_since, upto = -1, -1, -1, nil
  local first = true
  local function cursor()
    local keys, vals, values, n, i, resume, finished = {}, {}, {}, 0, 0,
      nil, false
    return function()
      while i == n do
        if finished then return false end
        local first_chunk = upto == nil
        n, resume, finished, upto = c:view_read(name, lo, lo_incl, hi,
          hi_incl, reverse, READ_CHUNK, resume, keys, vals, upto)
        i = 0
        if first_chunk then
          high = upto
          if on_step and live then
            on_step(first and "first" or "range", low, high)
          end
        end
        if n > 0 and index then c:get_many(mp, vals, n, values) end
      end
      i = i + 1
      return true, keys[i], vals[i], values[i]
    end
  end

  -- A live read's step after the first pass, from the view's journal:
  -- what the checkpoints after `pass_since` changed in the range, read in
  -- one read transaction, in key order. Nil when the journal does not hold
  -- it all (it overflowed, the view was rebuilt or replaced, or its
  -- checkpoints are another process's): then the range is read again.
  local function changes()
    local keys, vals, values = {}, {}, {}
    local n, since = c:view_changes(name, lo, lo_incl, hi, hi_incl,
      index and remaining or -1, pass_since, keys, vals)
    if not n then return nil, since end
    if n > 0 and index then c:get_many(mp, vals, n, values) end
    local i = 0
    return function()
      if i == n then return false end
      i = i + 1
      return true, keys[i], vals[i], values[i]
    end, since
  end

  -- Live: after the first pass, each time the view commits more, only what
  -- is new is delivered: index entries with a newer seq, group keys whose
  -- accumulator is not the one last delivered (`seen`: a group's live read
  -- keeps each key's packed accumulator, to tell).
  local cur = cursor()
  local seen = live and kind == "group" and {} or nil
  return function()
    -- A live read ends when its database closes, even if the consumer
    -- closed it inside the loop body.
    if live and c:closed() then return nil end
    while remaining > 0 do
      local ok, key, v, value = cur()
      if ok then
        local deliver = true
        if seen then
          local k, packed = core.key_encode(key), core.encode(v)
          deliver = first or seen[k] ~= packed
          seen[k] = packed
        elseif not first then
          deliver = v > low and v <= high
        end
        if deliver then
          remaining = remaining - 1
          if index then
            if plain then return key, v, value end
            return key, v, db:_finish(value, v)
          end
          return key, v
        end
      elseif not live or c:closed() then
        return nil
      else
        if hooks and hooks.flush and hooks.flush() then return nil end
        if c:closed() then return nil end
        if high > pass_since then pass_since = high end
        local target = pass_since + 1
        local err = await(function(k)
          return c:view_wait(name, target, nil, k)
        end)
        if err then
          if errors.is(err, "ECLOSED") then return nil end
          error(explain_wait_error(self, err, target), 0)
        end
        local step, since
        if incremental then step, since = changes() end
        low, first = pass_since, false
        if step then
          high, cur = since, step
          if on_step then on_step("journal", low, high) end
        else
          upto, cur = nil, cursor() -- its first chunk sets high
        end
      end
    end
    return nil
  end
end

--- Iterates over a range of keys, in key order (reverse = true: the other
-- way), since-gated: `for key, acc in group:read{...}` or
-- `for key, seq, value in index:read{...}`. Options: gt, gte, lt, lte,
-- reverse, limit, live (go on with entries committed later), wait, timeout.
--
-- Async form `read(opts, cb)`: `cb(err, entries)` with the list of entries,
-- each `{ key = k, value = acc }` (group) or `{ key = k, seq = s, value =
-- v }` (index). A live read calls `cb(nil, entries)` once with the entries
-- in the range, then again with each batch of new ones, until the database
-- closes or the function it returns is called (then `cb` is not called
-- again); an error is passed once, as `cb(err)`, and ends it.
function View:read(opts, cb)
  check_view(self, "read")
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  opts = check_opts(opts, "read") or {}
  check_cb(cb, "read")
  if self._kind == "reduce" then
    raise("EINVAL", "a reduce view has no keys to read")
  end
  if opts.live and opts.reverse then
    raise("EINVAL", "a live read cannot be reverse")
  end
  local target = gate_target(self, opts)
  if not cb then return read_iter(self, opts, target) end

  local hooks = {}
  return batches(function() return read_iter(self, opts, target, hooks) end,
    self._kind == "index" and function(key, seq, value)
      return { key = key, seq = seq, value = value }
    end or function(key, acc) return { key = key, value = acc } end,
    opts.live, cb, hooks)
end

--- Calls `cb()` (async) or returns (sync) once the view has caught up with
-- the log's since as it is now.
function View:ready(cb)
  check_view(self, "ready")
  check_cb(cb, "ready")
  if cb then
    local c, target = self._db._c, self._db._c:since()
    -- the view's own error (which view, at which seq, what), not only
    -- the code's message; an error known now goes to cb too
    local ok, reached = pcall(c.view_wait, c, self._name, target, nil,
      function(err) cb(err and explain_wait_error(self, err, target)) end)
    if not ok then
      core.timer(0, function() cb(reached) end)
    elseif reached then
      core.timer(0, function() cb(nil) end)
    end
    return
  end
  gate(self)
end

--- How far the view has got: { since, log_since, processed, rate (values/s
-- while catching up), failed, error, script_changed, kind, version, hash }.
function View:status()
  check_view(self, "status")
  return view_info(self)
end

--- Observes the view's progress: `fn(status)` (see View:status) every
-- `interval` seconds (default 0.25) while the view is behind the log, once
-- more when it has caught up, and again whenever the log grows. For
-- progress bars over long rebuilds. Returns a function that stops it. When
-- the view is dropped (or its database closes) it ends: fn is not called
-- again. An
-- interval under a millisecond (0 included) is one millisecond: a timer of
-- 0 armed again in its own callback would run again in the same turn of
-- the loop, forever, and the indexer would never run.
function View:on_progress(fn, interval)
  check_view(self, "on_progress")
  local c = self._db._c
  if type(fn) ~= "function" then
    raise("EINVAL", "on_progress takes a function, not a " .. type(fn))
  end
  interval = interval or 0.25
  if type(interval) ~= "number" or not (interval >= 0) then
    raise("EINVAL", "on_progress's interval must be a number of " ..
      "seconds >= 0, not " .. tostring(interval))
  end
  if interval < 0.001 then interval = 0.001 end
  local stopped, polling, stop_since = false, false, nil
  local function poll()
    if stopped or c:closed() then
      polling = false
      return
    end
    local s = view_info(self)
    if s == nil then
      -- the view was dropped: the subscription ends, fn hears no more
      stopped, polling = true, false
      if stop_since then stop_since() end
      return
    end
    fn(s)
    if s.failed or s.since >= s.log_since then
      polling = false
    else
      core.timer(interval, poll)
    end
  end
  local function start()
    if not polling and not stopped then
      polling = true
      core.timer(0, poll)
    end
  end
  stop_since = self._db:on_since(start)
  start()
  return function()
    stopped = true
    stop_since()
  end
end

function View:_call(method, kind, ...)
  check_view(self, method)
  local c, name = self._db._c, self._name
  local n = select("#", ...)
  local args, cb = { ... }, nil
  if kind ~= "sync" and n > 0 and type(args[n]) == "function" then
    cb, args[n], n = args[n], nil, n - 1
  end
  local packed = core.encode(args)
  if kind == "sync" then return c:view_call(name, method, packed) end
  if cb then
    local target = c:since()
    local function run(err)
      if err then return cb(explain_wait_error(self, err, target)) end
      local ok, res = pcall(c.view_call, c, name, method, packed)
      if ok then cb(nil, res) else cb(res) end
    end
    errors.to_cb(cb, function()
      if c:view_wait(name, target, nil, run) then core.timer(0, run) end
    end)
    return
  end
  gate(self)
  local res = c:view_call(name, method, packed)
  if kind == "source" then
    local i = 0
    return function()
      i = i + 1
      return res[i]
    end
  end
  return res
end

--- A view object for the view `name` (of `kind`, with the script methods
-- `methods`: { name = kind }) of the database object `db`.
function M.new(db, name, kind, methods)
  return setmetatable({ _db = db, _name = name, _kind = kind,
    _methods = methods }, View_mt)
end

--- For the bench and the specs: `full_reread = true` makes the live reads
-- made from then on read their whole range again after each commit (the
-- path a live read falls back on when the view's journal does not hold a
-- step), and `on_step` (a function, or nil) is called by each live read
-- made from then on before each step's entries with ("first" (the first
-- pass), "journal" or "range", the since it delivers from, the since it
-- delivers up to).
M.full_reread, M.on_step = false, nil

--- For the specs: `lua_reads = true` makes the reads made from then on
-- that are not live go the way live reads go (chunks of entries as Lua
-- tables, iterated in Lua) instead of through the C iterator, so that
-- the two can be compared.
M.lua_reads = false

--- Whether `v` is a view object.
function M.is(v) return getmetatable(v) == View_mt end

--- Waits (sync form) until the view has caught up with the log's since as
-- it is now; raises the view's error if it failed.
M.wait = gate

return M
