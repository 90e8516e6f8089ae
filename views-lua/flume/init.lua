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

local coroutine, error, type, select = coroutine, error, type, select
local running, resume, yield = coroutine.running, coroutine.resume,
  coroutine.yield
local maxinteger = math.maxinteger

local M = { version = core.version, core = core }

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

core.set_dispatch(function(fn, a, b, c)
  if direct[fn] then return fn(a, b, c) end
  spawn3(fn, a, b, c)
end)

local function raise_pending()
  local e = pending_error
  if e ~= nil then
    pending_error = nil
    error(e, 0)
  end
end

--- Whether a sync-form call may wait here.
local function can_wait()
  return driven[running()] or not core.running()
end

--- Runs `start(k)`, which begins an asynchronous operation whose completion
-- calls `k(err, result)`, and waits for it: by yielding inside a driven
-- coroutine, or by running the loop at top level.
local function await(start)
  local co = running()
  if driven[co] then
    local k = function(err, res) after_resume(co, resume(co, err, res)) end
    direct[k] = true
    start(k)
    return yield()
  end
  if core.running() then
    error("flume: cannot wait here: this code runs while the event loop " ..
      "runs, outside a coroutine flume drives; pass a callback (the async " ..
      "form) or call it inside flume.spawn", 3)
  end
  local done, e, r = false, nil, nil
  local k = function(err, res) done, e, r = true, err, res end
  direct[k] = true
  start(k)
  while not done do
    core.run("once")
    raise_pending()
  end
  return e, r
end
M._await = await

--- Runs the event loop until no work is left (the async style's main loop).
-- Errors raised by callbacks stop the loop and are raised here.
function M.run()
  if core.running() then
    error("flume: cannot run the loop from inside a callback", 2)
  end
  repeat
    local more = core.run("default")
    raise_pending()
  until not more
end

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
  if cb then
    core.timer(seconds, cb)
    return
  end
  await(function(k) core.timer(seconds, function() k() end) end)
end

-- Codecs ---------------------------------------------------------------------

--- The built-in MessagePack codec, usable on its own.
M.msgpack = { name = "msgpack", encode = core.encode, decode = core.decode }

local function check_codec(codec)
  if codec == nil or codec == "msgpack" then return "msgpack", true end
  if codec == "raw" then return "raw", false end
  if type(codec) == "table" and type(codec.name) == "string" and
    type(codec.encode) == "function" and type(codec.decode) == "function" then
    if codec.name == "msgpack" or codec.name == "raw" then
      error("flume: EINVAL: a custom codec cannot be named '" ..
        codec.name .. "'", 3)
    end
    return codec.name, false, codec.encode, codec.decode
  end
  error("flume: EINVAL: codec must be \"msgpack\", \"raw\" or " ..
    "{ name = string, encode = function, decode = function }", 3)
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
    error("flume: EINVAL: mapper must be a function", 2)
  end
  local c = core.open(path, name, opts.sync ~= false, opts.map_size)
  return setmetatable({
    _c = c, _mp = mp, _encode = encode, _decode = decode,
    _mapper = opts.mapper, path = path, codec = name,
  }, DB_mt)
end

--- Appends a value, or with `{ batch = true }` a list of values all or
-- nothing. Sync form: returns the (last) seq once durable. Async form:
-- `cb(err, seq)`.
function DB:append(value, opts, cb)
  check_self(self, "append")
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  local batch = opts ~= nil and opts.batch or false
  local c, mp = self._c, self._mp
  if c:closed() then error("flume: ECLOSED: database is closed", 2) end
  if batch and type(value) ~= "table" then
    error("bad argument #1 to 'append' (a list of values expected with " ..
      "batch = true)", 2)
  end
  local encode = self._encode
  if encode then
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
  if err then error(err, 2) end
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
    error("flume: EINVAL: option '" .. k .. "' must be an integer", 3)
  end
  return v
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
    direct[fn] = true
    w = c:on_since(fn)
  end)
  return err
end
M._wait_since = wait_since

local CHUNK = 256

--- Iterates over the log: `for seq, value in db:stream{...} do`.
-- Options: gt, gte, lt, lte (seqs), reverse, limit, live (go on with
-- values appended later; waits for them like a sync call).
function DB:stream(opts)
  check_self(self, "stream")
  opts = opts or {}
  local lo = opt_int(opts, "gte") or
    (opt_int(opts, "gt") and opts.gt + 1) or 0
  local hi = opt_int(opts, "lte") or
    (opt_int(opts, "lt") and opts.lt - 1) or maxinteger
  local reverse, live = opts.reverse and true or false, opts.live
  local remaining = opt_int(opts, "limit") or maxinteger
  if reverse and live then
    error("flume: EINVAL: a live stream cannot be reverse", 2)
  end
  local c, mp = self._c, self._mp
  if c:closed() then error("flume: ECLOSED: database is closed", 2) end
  local plain = self._decode == nil and self._mapper == nil
  local seqs, vals, n, i = {}, {}, 0, 0
  local nxt = reverse and hi or lo
  local done = remaining <= 0 or lo > hi
  return function()
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
  elseif can_wait() then
    await(function(k) c:close(k) end)
  else
    c:close()
  end
end

--- Whether close has been called.
function DB:closed() return self._c:closed() end

return M
