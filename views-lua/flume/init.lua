--- flume: an embeddable append-only log with materialized Lua views.
--
-- This is the Lua face of the runtime: `flume.core` (C) does the work
-- asynchronously; this file gives every call that can wait its two forms.
--
-- * async: the last argument is a callback `function(err, result)`;
-- * sync: no callback. At top level it runs the event loop until the call is
--   done; inside a coroutine flume drives (every callback flume calls, and
--   `flume.spawn`) it yields instead. Anywhere else (a coroutine of your own
--   while the loop is running) it raises, because the loop is never
--   re-entered.
--
-- Errors of the sync form are raised as `flume: ECODE: message`; the async
-- form passes them as the callback's first argument. Misuse (bad
-- arguments, unencodable values, use after close) raises in both forms.
local core = require "flume.core"
local scheduler = require "flume.scheduler"

local error, type, select = error, type, select
local await, later, batches = scheduler.await, scheduler.later,
  scheduler.batches
local maxinteger = math.maxinteger

local M = { version = core.version, core = core }

-- The loop and coroutines: see flume/scheduler.lua.
M.run, M.spawn, M.sleep = scheduler.run, scheduler.spawn, scheduler.sleep

-- Codecs ---------------------------------------------------------------------

--- How flume reports a warning (a view script changed without a version
-- bump); replace it to route warnings elsewhere. They stay queryable too
-- (`view:status().script_changed`).
function M.warn(msg)
  io.stderr:write("flume: warning: ", msg, "\n")
end

--- The built-in MessagePack codec, usable on its own.
M.msgpack = { name = "msgpack", encode = core.encode, decode = core.decode }

local function check_codec(codec)
  if codec == nil or codec == "msgpack" then return "msgpack", true end
  if codec == "raw" then return "raw", false end
  if type(codec) == "table" and type(codec.name) == "string" and
    type(codec.encode) == "function" and type(codec.decode) == "function" then
    if codec.name == "msgpack" or codec.name == "raw" then
      error("flume: EINVAL: a custom codec cannot be named '" ..
        codec.name .. "'", 0)
    end
    return codec.name, false, codec.encode, codec.decode
  end
  error("flume: EINVAL: codec must be \"msgpack\", \"raw\" or " ..
    "{ name = string, encode = function, decode = function }", 0)
end

local function encode_custom(encode, v, where)
  local ok, s = pcall(encode, v)
  if not ok then
    error("flume: EENCODE: value cannot be encoded: " .. where ..
      tostring(s), 0)
  end
  if type(s) ~= "string" then
    error("flume: EENCODE: value cannot be encoded: " .. where ..
      "the codec's encode returned a " .. type(s) .. ", not a string", 0)
  end
  return s
end

-- Databases ------------------------------------------------------------------

local DB = {}
local DB_mt = {
  __name = "flume.db",
  __index = function(db, k)
    if k == "since" then return db._c:since() end
    return DB[k]
  end,
  __close = function(db) db:close() end,
  __tostring = function(db)
    return "flume.db (" .. (db.path or "memory") .. ")"
  end,
}

local function check_self(db, name)
  if getmetatable(db) ~= DB_mt then
    error("bad argument #1 to '" .. name ..
      "' (flume.db expected; call it as db:" .. name .. "(...))", 3)
  end
end

--- Opens (creating if missing) a database.
-- @param path a folder for a durable LMDB database, or nil for memory.
-- @param opts `codec` ("msgpack", "raw", or {name=, encode=, decode=}),
--   `sync` (default true: acknowledge only once fsynced), `mapper`
--   (function(value, seq) applied to every value read).
function M.open(path, opts)
  if type(path) == "table" and opts == nil then path, opts = nil, path end
  if path ~= nil and type(path) ~= "string" then
    error("bad argument #1 to 'open' (string or nil expected, got " ..
      type(path) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'open' (table or nil expected)", 2)
  end
  opts = opts or {}
  local name, mp, encode, decode = check_codec(opts.codec)
  if opts.mapper ~= nil and type(opts.mapper) ~= "function" then
    error("flume: EINVAL: mapper must be a function", 0)
  end
  local c = core.open(path, name, opts.sync ~= false, opts.map_size)
  if opts.mapper then c:set_mapper(opts.mapper) end
  if opts.ready == false then c:set_paused(true) end
  return setmetatable({
    _c = c, _mp = mp, _encode = encode, _decode = decode,
    _mapper = opts.mapper, path = path, codec = name,
  }, DB_mt)
end

--- Checks an options argument: nil or a table.
local function check_opts(opts, name)
  if opts ~= nil and type(opts) ~= "table" then
    error("flume: EINVAL: " .. name .. "'s options must be a table, not " ..
      "a " .. type(opts), 0)
  end
  return opts
end

--- Checks a callback argument: nil or a function.
local function check_cb(cb, name)
  if cb ~= nil and type(cb) ~= "function" then
    error("flume: EINVAL: " .. name .. "'s callback must be a function, " ..
      "not a " .. type(cb), 0)
  end
  return cb
end

--- Appends a value, or with `{ batch = true }` a list of values all or
-- nothing. Sync form: returns the (last) seq once durable. Async form:
-- `cb(err, seq)`. With `encoded = true` the values are the bytes the
-- database's codec gives (core.encode for msgpack), as `flume append` has.
function DB:append(value, opts, cb)
  check_self(self, "append")
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  check_opts(opts, "append")
  check_cb(cb, "append")
  local batch = opts ~= nil and opts.batch or false
  local c, mp = self._c, self._mp
  -- encoded: the values are bytes the codec gave already (`flume append`)
  -- (checked, so that no bytes the codec cannot read reach the log)
  local encoded = opts ~= nil and opts.encoded or false
  if encoded then
    local list = batch and value or { value }
    for i = 1, batch and #list or 1 do
      local v = list[i]
      if type(v) ~= "string" or (mp and not pcall(core.decode, v)) then
        error("flume: EINVAL: encoded value " .. i .. " is not what the " ..
          "codec writes", 0)
      end
    end
    mp = false
  end
  if c:closed() then error("flume: ECLOSED: database is closed", 0) end
  if batch and type(value) ~= "table" then
    error("bad argument #1 to 'append' (a list of values expected with " ..
      "batch = true)", 2)
  end
  local encode = self._encode
  if encode and not encoded then
    if batch then
      local enc = {}
      for i = 1, #value do
        enc[i] = encode_custom(encode, value[i], "batch item " .. i .. ": ")
      end
      value = enc
    else
      value = encode_custom(encode, value, "")
    end
  end
  if cb ~= nil then
    if type(cb) ~= "function" then
      error("bad argument #3 to 'append' (function expected)", 2)
    end
    c:append(mp, batch, value, cb)
    return
  end
  local err, seq = await(function(k) c:append(mp, batch, value, k) end)
  if err then error(err, 0) end
  return seq
end

local function finish_value(db, v, seq)
  local decode = db._decode
  if decode then
    local ok, r = pcall(decode, v)
    if not ok then
      error("flume: EDECODE: value cannot be decoded: at seq " .. seq ..
        ": " .. tostring(r), 0)
    end
    v = r
  end
  local mapper = db._mapper
  if mapper then v = mapper(v, seq) end
  return v
end

--- The value at `seq`; raises `flume: ENOTFOUND` if there is none.
function DB:get(seq)
  check_self(self, "get")
  if math.type(seq) ~= "integer" then
    error("bad argument #1 to 'get' (integer seq expected, got " ..
      (math.type(seq) or type(seq)) .. ")", 2)
  end
  return finish_value(self, self._c:get(self._mp, seq), seq)
end

local function opt_int(opts, k)
  local v = opts[k]
  if v ~= nil and math.type(v) ~= "integer" then
    error("flume: EINVAL: option '" .. k .. "' must be an integer, not " ..
      tostring(v), 0)
  end
  return v
end

--- The `limit` option: an integer >= 0, or nil or math.huge for none.
local function opt_limit(opts)
  local v = opts.limit
  if v == nil or v == math.huge then return maxinteger end
  if math.type(v) ~= "integer" or v < 0 then
    error("flume: EINVAL: option 'limit' must be an integer >= 0 " ..
      "(math.huge: no limit), not " .. tostring(v), 0)
  end
  return v
end

--- The seq range of a stream's options as inclusive bounds lo, hi (lo > hi
-- when it is empty). gt = math.maxinteger and lt = math.mininteger exclude
-- every seq: the bound is not moved past the int64 range, where it wraps.
local function seq_range(opts)
  local lo, hi = opt_int(opts, "gte"), opt_int(opts, "lte")
  local gt, lt = opt_int(opts, "gt"), opt_int(opts, "lt")
  if lo == nil then
    if gt == maxinteger then return 0, -1 end
    lo = gt and gt + 1 or 0
  end
  if hi == nil then
    if lt == math.mininteger then return 0, -1 end
    hi = lt and lt - 1 or maxinteger
  end
  return lo, hi
end

--- Waits (sync form) until the log's since reaches `target`. Returns an
-- error message if the database closed first.
local function wait_since(db, target)
  local c = db._c
  if c:since() >= target then return end
  local err = await(function(k)
    local w
    local fn = function(e, since)
      if e or since >= target then
        if not e then w:stop() end
        k(e)
      end
    end
    w = c:on_since(scheduler.inline(fn))
  end)
  return err
end

local CHUNK = 256

--- Iterates over the log: `for seq, value in db:stream{...} do`.
-- Options: gt, gte, lt, lte (seqs), reverse, limit, live (go on with
-- values appended later; waits for them like a sync call).
--
-- Async form `stream(opts, cb)`: `cb(err, entries)` with the list of
-- `{ seq = s, value = v }`; live: first what is there, then each batch of
-- new values, until the database closes or the returned function is called.
function DB:stream(opts, cb)
  check_self(self, "stream")
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  check_cb(cb, "stream")
  if cb then
    local hooks = {}
    local it = self:_stream(opts, hooks)
    return batches(function() return it end,
      function(seq, value) return { seq = seq, value = value } end,
      opts and opts.live, cb, hooks)
  end
  return self:_stream(opts)
end

function DB:_stream(opts, hooks)
  opts = check_opts(opts, "stream") or {}
  local lo, hi = seq_range(opts)
  local reverse, live = opts.reverse and true or false, opts.live
  local remaining = opt_limit(opts)
  if reverse and live then
    error("flume: EINVAL: a live stream cannot be reverse", 0)
  end
  local c, mp = self._c, self._mp
  if c:closed() then error("flume: ECLOSED: database is closed", 0) end
  local plain = self._decode == nil and self._mapper == nil
  -- Seqs start at 0: a lower bound below it means "from the start" (a
  -- live stream must never wait for a seq below 0, which is always reached).
  if lo < 0 then lo = 0 end
  local seqs, vals, n, i = {}, {}, 0, 0
  local nxt = reverse and hi or lo
  local done = remaining <= 0 or lo > hi
  return function()
    -- A live stream ends when its database closes, even if the consumer
    -- closed it inside the loop body (a live stream has no other end).
    if live and c:closed() then
      done, n = true, 0
      return nil
    end
    if i < n then
      i = i + 1
      local seq = seqs[i]
      if plain then return seq, vals[i] end
      return seq, finish_value(self, vals[i], seq)
    end
    while not done do
      if reverse and nxt < lo or not reverse and nxt > hi then break end
      n = c:read(mp, nxt, reverse and lo or hi,
        remaining < CHUNK and remaining or CHUNK, seqs, vals)
      if n > 0 then
        remaining = remaining - n
        if remaining <= 0 then done = true end
        nxt = reverse and seqs[n] - 1 or seqs[n] + 1
        i = 1
        local seq = seqs[1]
        if plain then return seq, vals[1] end
        return seq, finish_value(self, vals[1], seq)
      end
      if not live then break end
      if hooks and hooks.flush and hooks.flush() then break end -- stopped
      if c:closed() then break end
      if wait_since(self, nxt) then break end -- the database closed
    end
    done = true
    return nil
  end
end

--- Observes the log's since: `fn(since)` after every commit. Returns a
-- function that stops observing.
function DB:on_since(fn)
  check_self(self, "on_since")
  if type(fn) ~= "function" then
    error("bad argument #1 to 'on_since' (function expected)", 2)
  end
  local w = self._c:on_since(function(err, since)
    if not err then fn(since) end
  end)
  return function() w:stop() end
end

--- Closes the database. Appends already accepted are written first. Safe to
-- call more than once. Sync form waits; async form calls `cb()`.
function DB:close(cb)
  check_self(self, "close")
  local c = self._c
  if cb ~= nil and type(cb) ~= "function" then
    error("bad argument #1 to 'close' (function expected)", 2)
  end
  if c:closed() then
    if cb then core.timer(0, cb) end
    return
  end
  if cb then
    c:close(function() cb() end)
  elseif scheduler.can_wait() then
    await(function(k) c:close(k) end)
  else
    c:close()
  end
end

--- Whether close has been called.
function DB:closed() return self._c:closed() end

-- Views ------------------------------------------------------------------------

local View = {}
local View_mt = { __name = "flume.view" }

local function view_info(view)
  return view._db._c:view_info(view._name)
end

View_mt.__index = function(view, k)
  if k == "since" then return view_info(view).since end
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
  if err:find("^flume: EVIEW") then
    local info = view_info(view)
    if info and info.error then return info.error end
  elseif err:find("^flume: ETIMEDOUT") then
    local info = view_info(view)
    return string.format("%s waiting for view '%s' to reach seq %d (it is " ..
      "at %d)", err, view._name, target, info and info.since or -1)
  end
  return err
end

--- Checks a `timeout` option: a number of seconds, math.huge for none.
-- Returns the seconds, or nil for no timeout.
local function check_timeout(t)
  if t == nil or t == math.huge then return nil end
  if type(t) ~= "number" or t ~= t or t < 0 then
    error("flume: EINVAL: timeout must be a number of seconds >= 0 " ..
      "(math.huge: no timeout), not " .. tostring(t), 0)
  end
  return t
end

--- The log since a gated read waits for (since-gating: as it is at the
-- moment of the call), or -1 with `wait = false`.
local function gate_target(view, opts)
  check_timeout(opts and opts.timeout)
  if opts ~= nil and opts.wait == false then return -1 end
  return view._db._c:since()
end

--- Waits until the view has reached `target` (see gate_target). opts:
-- timeout = seconds.
local function gate(view, opts, target)
  local c = view._db._c
  target = target or gate_target(view, opts)
  local timeout = check_timeout(opts and opts.timeout)
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
    error("flume: ECLOSED: database is closed", 0)
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
      error("flume: EINVAL: a reduce view's get takes only options and a " ..
        "callback: get([opts][, cb])", 0)
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

  -- One pass over the range, in chunks, each a short read transaction.
  -- An index entry's value comes from the log: a chunk's values are read
  -- together, in one read transaction.
  local index, mp, plain = kind == "index", db._mp,
    db._decode == nil and db._mapper == nil
  local function cursor()
    local keys, vals, values, n, i, resume, finished = {}, {}, {}, 0, 0,
      nil, false
    return function()
      if i == n then
        if finished then return false end
        n, resume = c:view_read(name, lo, lo_incl, hi, hi_incl, reverse,
          READ_CHUNK, resume, keys, vals)
        i = 0
        finished = n < READ_CHUNK
        if n == 0 then return false end
        if index then c:get_many(mp, vals, n, values) end
      end
      i = i + 1
      return true, keys[i], vals[i], values[i]
    end
  end

  -- Live: after the first pass, each time the view commits more, the range
  -- is read again and only what is new is delivered: index entries with a
  -- newer seq, group keys whose accumulator changed.
  local cur, first = cursor(), true
  local low, high, pass_since = -1, maxinteger, self.since
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
            return key, v, finish_value(db, value, v)
          end
          return key, v
        end
      elseif not live or c:closed() then
        return nil
      else
        if hooks and hooks.flush and hooks.flush() then return nil end
        if c:closed() then return nil end
        local target = pass_since + 1
        local err = await(function(k)
          return c:view_wait(name, target, nil, k)
        end)
        if err then
          if err:find("^flume: ECLOSED") then return nil end
          error(explain_wait_error(self, err, target), 0)
        end
        low, high = pass_since, self.since
        pass_since, first, cur = high, false, cursor()
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
    error("flume: EINVAL: a reduce view has no keys to read", 0)
  end
  if opts.live and opts.reverse then
    error("flume: EINVAL: a live read cannot be reverse", 0)
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
    if c:view_wait(self._name, target, nil, function(err) cb(err) end) then
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
-- progress bars over long rebuilds. Returns a function that stops it. An
-- interval under a millisecond (0 included) is one millisecond: a timer of
-- 0 armed again in its own callback would run again in the same turn of
-- the loop, forever, and the indexer would never run.
function View:on_progress(fn, interval)
  check_view(self, "on_progress")
  local c = self._db._c
  if type(fn) ~= "function" then
    error("flume: EINVAL: on_progress takes a function, not a " .. type(fn), 0)
  end
  interval = interval or 0.25
  if type(interval) ~= "number" or not (interval >= 0) then
    error("flume: EINVAL: on_progress's interval must be a number of " ..
      "seconds >= 0, not " .. tostring(interval), 0)
  end
  if interval < 0.001 then interval = 0.001 end
  local stopped, polling = false, false
  local function poll()
    if stopped or c:closed() then
      polling = false
      return
    end
    local s = view_info(self)
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
  local stop_since = self._db:on_since(start)
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
    if c:view_wait(name, target, nil, run) then core.timer(0, run) end
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

local reserved = { since = true, path = true, codec = true }

local function read_file(path)
  if path:find("\0", 1, true) then
    error("flume: EINVAL: a view script path cannot contain a NUL byte", 0)
  end
  local f, err = io.open(path, "rb")
  if not f then error("flume: ENOENT: cannot read view script: " .. err, 0) end
  local text = f:read("a")
  f:close()
  return text
end

--- Adds a view: `db:use(name, view [, cb])` where view is a script path
-- (ending in .lua), a script source string, or a table whose functions
-- capture no local variable. The view is mounted at db[name].
function DB:use(name, view, cb)
  check_self(self, "use")
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    error("flume: EINVAL: a view name must be an identifier, not " ..
      tostring(name), 0)
  end
  if DB[name] ~= nil or reserved[name] or name:sub(1, 1) == "_" then
    error("flume: EEXIST: name is already in use: '" .. name ..
      "' is a database method", 0)
  end
  check_cb(cb, "use")
  local c = self._c
  if c:closed() then error("flume: ECLOSED: database is closed", 0) end
  local src, chunk, tbl
  if type(view) == "string" then
    if not view:find("\n") and view:match("%.lua$") then
      src, chunk = read_file(view), "@" .. view
    else
      src, chunk = view, "=" .. name
    end
  elseif type(view) == "table" then
    tbl = view
  else
    error("bad argument #2 to 'use' (script path, source or table expected)", 2)
  end
  local function mount()
    local info = c:view_info(name)
    local obj = setmetatable({ _db = self, _name = name, _kind = info.kind,
      _methods = c:view_methods(name) }, View_mt)
    rawset(self, name, obj)
    if info.script_changed then
      M.warn("view '" .. name .. "' script changed but its version (" ..
        info.version .. ") did not: its state was built by the old " ..
        "script; bump the version to rebuild it")
    end
    return obj
  end
  if cb then
    c:use(name, src, chunk, tbl, function(err)
      if err then return cb(err) end
      cb(nil, mount())
    end)
    return
  end
  local err = await(function(k) c:use(name, src, chunk, tbl, k) end)
  if err then error(err, 0) end
  return mount()
end

--- Destroys every view's state and rebuilds it from the log. Sync form:
-- returns once every view has caught up; async: cb(err).
function DB:rebuild(cb)
  check_self(self, "rebuild")
  check_cb(cb, "rebuild")
  local c = self._c
  c:rebuild()
  local views = {}
  for k, v in pairs(self) do
    if getmetatable(v) == View_mt then views[#views + 1] = v end
  end
  if cb then
    local left = #views + 1
    local function one(err)
      if err and left > 0 then left = 0; return cb(err) end
      left = left - 1
      if left == 0 then cb(nil) end
    end
    for _, v in ipairs(views) do v:ready(one) end
    one()
    return
  end
  for _, v in ipairs(views) do gate(v) end
end

--- Lets the indexer run (after `flume.open(path, { ready = false })`).
function DB:set_ready()
  check_self(self, "set_ready")
  self._c:set_paused(false)
end

--- The views of the database: { name = view }.
function DB:views()
  local t = {}
  for k, v in pairs(self) do
    if getmetatable(v) == View_mt then t[k] = v end
  end
  return t
end

return M
