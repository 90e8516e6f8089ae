--- flume: an embeddable append-only log with materialized Lua views.
--
-- This is the Lua face of the runtime: `flume.core` (C) does the work
-- asynchronously; the Lua side gives every call that can wait its two forms.
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
--
-- The parts (each requires only those listed before it, and flume.core):
--
-- * flume/errors.lua     raising errors with the core's names and messages;
-- * flume/options.lua    the checks of arguments and options;
-- * flume/scheduler.lua  waiting: the loop, driven coroutines, sleep, the
--                        async forms of sync calls and iterations;
-- * flume/view.lua       the view object `db:use` mounts;
-- * flume/init.lua       (this file) `flume.open`, codecs and the database.
local core = require "flume.core"
local errors = require "flume.errors"
local scheduler = require "flume.scheduler"
local options = require "flume.options"
local View = require "flume.view"

local error, type, select = error, type, select
local raise, to_cb = errors.raise, errors.to_cb
local await, batches, later = scheduler.await, scheduler.batches,
  scheduler.later
local check_opts, check_cb = options.check_opts, options.check_cb
local opt_int, opt_limit = options.opt_int, options.opt_limit
local maxinteger = math.maxinteger

local M = { version = core.version, core = core }

-- The loop and coroutines: see flume/scheduler.lua.
M.run, M.spawn, M.sleep = scheduler.run, scheduler.spawn, scheduler.sleep
-- Another event loop driving flume's: poll M.fd(), call M.step() (see
-- flume/luv.lua for luv).
M.step, M.fd, M.timeout = scheduler.step, scheduler.fd, scheduler.timeout

-- Codecs ---------------------------------------------------------------------

--- How flume reports a warning (a view script changed without a version
-- bump); replace it to route warnings elsewhere. They stay queryable too
-- (`view:status().script_changed`).
function M.warn(msg)
  io.stderr:write("flume: warning: ", msg, "\n")
end

--- How flume reports what a view script prints (`print(...)` or
-- `log(fmt, ...)` in a view, its mapper or its methods) for a database
-- opened without an `on_log` option: one line on stderr, `flume: view
-- NAME at seq N: message`. Replace it to route them elsewhere; it is
-- called on the loop, later than the print, as on_log is.
-- @param view the view's name, nil for the mapper.
-- @param seq the seq being processed, nil when none (a script's top
--   level, a method, a report of dropped messages).
-- @param msg the message.
function M.on_log(view, seq, msg)
  io.stderr:write("flume: ", view and "view " .. view or "mapper",
    seq and " at seq " .. seq or "", ": ", msg, "\n")
end

-- What a database opened without on_log calls: M.on_log as it is then.
local function default_on_log(view, seq, msg) return M.on_log(view, seq, msg) end

--- The built-in MessagePack codec, usable on its own.
M.msgpack = { name = "msgpack", encode = core.encode, decode = core.decode }

--- Errors a program can branch on. Every error flume raises is a string
-- `flume: NAME: message[: detail]`; `flume.errors.name(err)` gives NAME
-- ("ENOWRITER", "ETIMEDOUT", ...) or nil for an error that is not
-- flume's, `flume.errors.code(err)` its number (flume.h's FLUME_E*),
-- `flume.errors.is(err, NAME)` tests it, and `flume.errors.list[NAME]` is
-- { code, name, message } for every name.
M.errors = { name = errors.name, code = errors.code, is = errors.is,
  list = core.errors }

local function check_codec(codec)
  if codec == nil or codec == "msgpack" then return "msgpack", true end
  if codec == "raw" then return "raw", false end
  if type(codec) == "table" and type(codec.name) == "string" and
    type(codec.encode) == "function" and type(codec.decode) == "function" then
    if codec.name == "msgpack" or codec.name == "raw" then
      raise("EINVAL", "a custom codec cannot be named '" .. codec.name .. "'")
    end
    return codec.name, false, codec.encode, codec.decode
  end
  raise("EINVAL", "codec must be \"msgpack\", \"raw\" or " ..
    "{ name = string, encode = function, decode = function }")
end

local function encode_custom(encode, v, where)
  local ok, s = pcall(encode, v)
  if not ok then
    raise("EENCODE", where .. tostring(s))
  end
  if type(s) ~= "string" then
    raise("EENCODE", where .. "the codec's encode returned a " .. type(s) ..
      ", not a string")
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

--- Checks `remote` of open's options: { urls = "nats://..." or a list,
-- stream = name, node = id, timeout = seconds, replicas = n }. Returns
-- what core.open takes (empty for a local log).
local function check_remote(remote)
  if remote == nil then return {} end
  if type(remote) ~= "table" then
    raise("EINVAL", "remote must be a table { urls = ..., stream = ... }")
  end
  check_opts(remote, "remote")
  local urls = remote.urls
  if type(urls) == "table" then
    for i, u in ipairs(urls) do
      if type(u) ~= "string" then
        raise("EINVAL", "remote.urls[" .. i .. "] must be a string")
      end
    end
    urls = table.concat(urls, ",")
  end
  if type(urls) ~= "string" or urls == "" then
    raise("EINVAL", "remote.urls must be a URL or a list of URLs")
  end
  if type(remote.stream) ~= "string" then
    raise("EINVAL", "remote.stream must be a string")
  end
  if remote.node ~= nil and type(remote.node) ~= "string" then
    raise("EINVAL", "remote.node must be a string")
  end
  local timeout_ms
  if remote.timeout ~= nil then
    if type(remote.timeout) ~= "number" or remote.timeout <= 0 then
      raise("EINVAL", "remote.timeout must be a positive number (seconds)")
    end
    timeout_ms = math.max(1, math.floor(remote.timeout * 1000))
  end
  if remote.replicas ~= nil and (math.type(remote.replicas) ~= "integer"
      or remote.replicas < 1) then
    raise("EINVAL", "remote.replicas must be a positive integer")
  end
  return { urls = urls, stream = remote.stream, node = remote.node,
    timeout_ms = timeout_ms, replicas = remote.replicas }
end

--- Opens (creating if missing) a database.
-- @param path a folder for a durable LMDB database, or nil for memory.
-- @param opts `codec` ("msgpack", "raw", or {name=, encode=, decode=}),
--   `sync` (default true: acknowledge only once fsynced), `mapper`
--   (function(value, seq) applied to every value read), `readonly` (read
--   an existing database beside its writer in another process, or with
--   none: no lock, no writes; live streams follow the writer's commits),
--   `remote` (the log on a NATS JetStream stream shared by several nodes:
--   { urls = "nats://host:4222" or a list, stream = name, node = id,
--   timeout = seconds (30), replicas = n (3, for a stream it creates) }).
--   `on_log` (function(view, seq, msg) receiving what view scripts print,
--   rate-limited; default flume.on_log).
function M.open(path, opts)
  if type(path) == "table" and opts == nil then path, opts = nil, path end
  if path ~= nil and type(path) ~= "string" then
    error("bad argument #1 to 'open' (string or nil expected, got " ..
      type(path) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'open' (table or nil expected)", 2)
  end
  opts = check_opts(opts, "open") or {}
  local name, mp, encode, decode = check_codec(opts.codec)
  if opts.mapper ~= nil and type(opts.mapper) ~= "function" then
    raise("EINVAL", "mapper must be a function")
  end
  if opts.readonly ~= nil and type(opts.readonly) ~= "boolean" then
    raise("EINVAL", "readonly must be a boolean")
  end
  if opts.readonly and path == nil then
    raise("EINVAL", "an in-memory database cannot be read-only: it is " ..
      "this handle's alone, no other process writes it (open a folder)")
  end
  if opts.on_log ~= nil and type(opts.on_log) ~= "function" then
    raise("EINVAL", "on_log must be a function(view, seq, msg)")
  end
  local remote = check_remote(opts.remote)
  -- A reader without a codec takes the database's own (msgpack or raw; a
  -- custom codec's functions must be given).
  local adopt = opts.readonly and opts.codec == nil
  local c = core.open(path, not adopt and name or nil, opts.sync ~= false,
    opts.map_size, opts.readonly, opts.on_log or default_on_log, remote.urls,
    remote.stream, remote.node, remote.timeout_ms, remote.replicas)
  if adopt and c:codec() ~= name then
    name = c:codec()
    if name ~= "raw" then
      c:close()
      raise("ECODEC", path .. " was written with the custom codec '" ..
        name .. "': pass it as { codec = { name = ..., encode = ..., " ..
        "decode = ... } }")
    end
    mp = false
  end
  -- A reader's views are the writer's: it sets up none of its own.
  if opts.mapper and not opts.readonly then c:set_mapper(opts.mapper) end
  if opts.ready == false and not opts.readonly then c:set_paused(true) end
  local db = setmetatable({
    _c = c, _mp = mp, _encode = encode, _decode = decode,
    _mapper = opts.mapper, path = path, codec = name,
    readonly = opts.readonly or false,
  }, DB_mt)
  -- Values that need no Lua after decoding: DB:get in one C call (the
  -- same checks and errors), found without __index.
  if decode == nil and opts.mapper == nil then
    db.get = c:fast_get(db, DB.get, mp)
  end
  -- The same for db:append(value, cb) on a msgpack database's writer.
  if mp and encode == nil and not db.readonly then
    db.append = c:fast_append(db, DB.append)
  end
  return db
end

--- Checks what DB:append is given: a value, or with batch a list of one
-- or more values (keys 1..n, no hole); nil is no value (a view would meet
-- it at its seq forever).
local function check_values(value, batch)
  if not batch then
    if value == nil then
      raise("EINVAL", "cannot append nil: a value of the log is not nil")
    end
    return
  end
  if type(value) ~= "table" then
    raise("EINVAL", "with batch = true the value is a list of values, " ..
      "not a " .. type(value))
  end
  local n, count = #value, 0
  for k in pairs(value) do
    if math.type(k) == "integer" and k > n then
      raise("EINVAL", "a batch is a list of values: it has a nil before " ..
        "item " .. k .. ", and nil is not a value")
    elseif math.type(k) ~= "integer" or k < 1 then
      raise("EINVAL", "a batch is a list of values, not a table with the " ..
        "key " .. (type(k) == "string" and "'" .. k .. "'" or tostring(k)))
    end
    count = count + 1
  end
  if count ~= n then
    raise("EINVAL", "a batch is a list of values: it has a nil among its " ..
      n .. " items, and nil is not a value")
  end
  if n == 0 then
    raise("EINVAL", "an empty batch: a batch is a list of one or more " ..
      "values")
  end
end

--- Appends a value, or with `{ batch = true }` a list of values all or
-- nothing. Sync form: returns the (last) seq once durable. Async form:
-- `cb(err, seq)`. With `encoded = true` the values are the bytes the
-- database's codec gives (core.encode for msgpack), as `flume append` has.
function DB:append(value, opts, cb)
  -- The common async call, db:append(v, cb) with msgpack: straight to the
  -- core (which raises ECLOSED itself), none of the checks below apply.
  if cb == nil and type(opts) == "function" and value ~= nil and
    getmetatable(self) == DB_mt and self._mp == true and
    self.readonly == false then
    return self._c:append(true, false, value, opts)
  end
  check_self(self, "append")
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  check_opts(opts, "append")
  check_cb(cb, "append")
  local batch = opts ~= nil and opts.batch or false
  check_values(value, batch)
  local c, mp = self._c, self._mp
  -- encoded: the values are bytes the codec gave already (`flume append`)
  -- (checked, so that no bytes the codec cannot read reach the log)
  local encoded = opts ~= nil and opts.encoded or false
  if encoded then
    local list = batch and value or { value }
    for i = 1, batch and #list or 1 do
      local v = list[i]
      if type(v) ~= "string" or (mp and not core.valid(v)) then
        raise("EINVAL", "encoded value " .. i .. " is not what the " ..
          "codec writes")
      end
    end
    mp = false
  end
  if c:closed() then raise("ECLOSED") end
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
    to_cb(cb, c.append, c, mp, batch, value, cb)
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
      raise("EDECODE", "at seq " .. seq .. ": " .. tostring(r))
    end
    v = r
  end
  local mapper = db._mapper
  if mapper then v = mapper(v, seq) end
  return v
end

--- The value at `seq`; raises `flume: ENOTFOUND` if there is none. The
-- log never waits, so there is no async form: any other argument, and a
-- seq that is not an integer >= 0, is EINVAL.
function DB:get(seq, ...)
  check_self(self, "get")
  if select("#", ...) > 0 then
    raise("EINVAL", "db:get takes only a seq, db:get(seq): a value of the " ..
      "log is there or not, it never waits, so there is no callback or " ..
      "options")
  end
  if math.type(seq) ~= "integer" or seq < 0 then
    raise("EINVAL", "db:get's seq must be an integer >= 0, not " ..
      (math.type(seq) and tostring(seq) or seq == nil and "nil" or
        "a " .. type(seq)))
  end
  return finish_value(self, self._c:get(self._mp, seq), seq)
end

-- A value of the log as the database gives it (decoded, mapped): for views.
DB._finish = finish_value


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
-- `{ seq = s, value = v }` (once; an empty list for an empty range); live:
-- first what is there (nothing when the range is empty), then each batch
-- of new values, until the database closes or the returned function is
-- called.
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
    raise("EINVAL", "a live stream cannot be reverse")
  end
  local c, mp = self._c, self._mp
  if c:closed() then raise("ECLOSED") end
  local plain = self._decode == nil and self._mapper == nil
  -- Seqs start at 0: a lower bound below it means "from the start" (a
  -- live stream must never wait for a seq below 0, which is always reached).
  if lo < 0 then lo = 0 end
  -- The commonest stream, iterated in C (db:scan): the same chunks.
  if plain and not live then return c:scan(mp, lo, hi, remaining, reverse) end
  -- A chunk's values are vals[1..n], at seqs first, first + step, ... (the
  -- log is dense); seq is the one of vals[i].
  local vals, n, i, seq, step = {}, 0, 0, 0, reverse and -1 or 1
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
      i, seq = i + 1, seq + step
      if plain then return seq, vals[i] end
      return seq, finish_value(self, vals[i], seq)
    end
    while not done do
      if reverse and nxt < lo or not reverse and nxt > hi then break end
      local first
      n, first = c:read(mp, nxt, reverse and lo or hi,
        remaining < CHUNK and remaining or CHUNK, false, vals)
      if n > 0 then
        remaining = remaining - n
        if remaining <= 0 then done = true end
        nxt = first + n * step
        i, seq = 1, first
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

--- Closes the database. Appends already accepted are written first, then
-- the views catch up with the log (for up to two seconds). Safe to call
-- more than once. Sync form waits; async form calls `cb()`.
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

local reserved = { since = true, path = true, codec = true, readonly = true }

local function read_file(path)
  if path:find("\0", 1, true) then
    raise("EINVAL", "a view script path cannot contain a NUL byte")
  end
  -- The system's error, by the core's name for it (a folder named *.lua
  -- opens, and fails at the read).
  local f, _, errno = io.open(path, "rb")
  local text
  if f then
    text, _, errno = f:read("a")
    f:close()
  end
  if text == nil then
    raise(errors.errno_name(errno) or "EIO", "cannot read view script " ..
      path)
  end
  return text
end

local function check_name(name)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    raise("EINVAL", "a view name must be an identifier, not " ..
      tostring(name))
  end
  if DB[name] ~= nil or reserved[name] or name:sub(1, 1) == "_" then
    raise("EEXIST", "'" .. name .. "' is a database method")
  end
end

--- What the catalogue keeps of a view given as a table: the text of the
-- chunk its functions were written in (a view module's file, or the string
-- it was loaded from), so that it can be mounted by name when that chunk
-- returns the view; nil when it cannot be read.
local function table_source(view)
  local f
  for _, k in ipairs({ "map", "reduce", "filter" }) do
    if type(view[k]) == "function" then f = view[k]; break end
  end
  if f == nil then
    for _, v in pairs(view) do
      if type(v) == "function" then f = v; break end
    end
  end
  if f == nil then return nil end
  local info = debug.getinfo(f, "S")
  local source = info and info.source
  if type(source) ~= "string" then return nil end
  if source:sub(1, 1) == "@" then
    local fh = io.open(source:sub(2), "rb")
    if not fh then return nil end
    local text = fh:read("a")
    fh:close()
    return text, source
  elseif source:sub(1, 1) == "=" then
    return nil
  end
  return source, "=(table view)"
end

local function mount_view(self, name)
  local c = self._c
  local info = c:view_info(name)
  local obj = View.new(self, name, info.kind, c:view_methods(name))
  rawset(self, name, obj)
  if info.script_changed then
    M.warn("view '" .. name .. "' script changed but its version (" ..
      info.version .. ") did not: its state was built by the old " ..
      "script; bump the version to rebuild it")
  end
  return obj
end

--- Adds a view: `db:use(name, view [, cb])` where view is a script path
-- (ending in .lua), a script source string, or a table whose functions
-- capture no local variable. The view is mounted at db[name].
function DB:use(name, view, cb)
  check_self(self, "use")
  check_name(name)
  check_cb(cb, "use")
  local c = self._c
  if c:closed() then raise("ECLOSED") end
  if type(view) ~= "string" and type(view) ~= "table" then
    error("bad argument #2 to 'use' (script path, source or table expected)", 2)
  end
  local src, chunk, tbl, kept, kept_chunk
  local function load()
    if type(view) == "string" then
      if not view:find("\n") and view:match("%.lua$") then
        src, chunk = read_file(view), "@" .. view
      else
        src, chunk = view, "=" .. name
      end
    else
      tbl = view
      kept, kept_chunk = table_source(view)
    end
  end
  local function mount()
    return mount_view(self, name)
  end
  if cb then
    to_cb(cb, function()
      load()
      c:use(name, src, chunk, tbl, function(err)
        if err then return cb(err) end
        cb(nil, mount())
      end, kept, kept_chunk)
    end)
    return
  end
  load()
  local err = await(function(k)
    c:use(name, src, chunk, tbl, k, kept, kept_chunk)
  end)
  if err then error(err, 0) end
  return mount()
end

--- Mounts a view as the database stores it, by name, without its file:
-- `db:view(name [, cb])`. On a writer the view is attached again (its
-- indexing goes on); on a read-only handle it reads what the writer
-- checkpoints. A view mounted already is returned as it is.
function DB:view(name, cb)
  check_self(self, "view")
  check_name(name)
  check_cb(cb, "view")
  local c = self._c
  if c:closed() then raise("ECLOSED") end
  local have = rawget(self, name)
  if have ~= nil then
    if cb then return later(function() return have end, cb) end
    return have
  end
  if cb then
    to_cb(cb, c.mount, c, name, function(err)
      if err then return cb(err) end
      cb(nil, mount_view(self, name))
    end)
    return
  end
  local err = await(function(k) c:mount(name, k) end)
  if err then error(err, 0) end
  return mount_view(self, name)
end

--- Drops a view: its record, stored script and state are removed in one
-- transaction, and db[name] goes. Sync form returns once it is committed;
-- async: cb(err). A database without that view: ENOTFOUND.
function DB:drop(name, cb)
  check_self(self, "drop")
  check_name(name)
  check_cb(cb, "drop")
  local c = self._c
  if c:closed() then raise("ECLOSED") end
  -- Once the drop is queued the view is out of use here, whatever the
  -- commit's outcome: its object goes at once.
  if cb then
    to_cb(cb, function()
      c:drop(name, cb)
      rawset(self, name, nil)
    end)
    return
  end
  local err = await(function(k)
    c:drop(name, k)
    rawset(self, name, nil)
  end)
  if err then error(err, 0) end
end

--- Where a remote log's stream and this node stand (the writer of a
-- remote log only): { stream, node, leader, replicas, messages, bytes,
-- last_seq, stored, lag, since, deny_delete, deny_purge, peers = { { name,
-- current, offline, lag, active_ms } } }. Sync form: returns it; async:
-- cb(err, status).
function DB:remote_status(cb)
  check_self(self, "remote_status")
  check_cb(cb, "remote_status")
  local c = self._c
  if c:closed() then raise("ECLOSED") end
  if cb then
    to_cb(cb, function() c:remote_status(cb) end)
    return
  end
  local err, info = await(function(k) c:remote_status(k) end)
  if err then error(err, 0) end
  return info
end

--- Destroys every view's state and rebuilds it from the log. Sync form:
-- returns once every view has caught up; async: cb(err).
function DB:rebuild(cb)
  check_self(self, "rebuild")
  check_cb(cb, "rebuild")
  local c = self._c
  if cb then
    local started = false
    to_cb(cb, function() c:rebuild(); started = true end)
    if not started then return end
  else
    c:rebuild()
  end
  local views = {}
  for k, v in pairs(self) do
    if View.is(v) then views[#views + 1] = v end
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
  for _, v in ipairs(views) do View.wait(v) end
end

--- Lets the indexer run (after `flume.open(path, { ready = false })`).
function DB:set_ready()
  check_self(self, "set_ready")
  self._c:set_paused(false)
end

--- The views the database has (its catalogue), by name: a list of
-- { name, kind, version, since, hash, attached, mounted, script,
-- chunkname, origin } (see the README's "The view catalogue").
function DB:views()
  check_self(self, "views")
  local c = self._c
  if c:closed() then raise("ECLOSED") end
  return c:catalogue()
end

-- Looking after a database (runtime/admin.c): on read-only handles too.

--- The storage: { page_size, map_size, used, readers, max_readers }.
function DB:storage() check_self(self, "storage") return self._c:storage() end

--- Every table's size from one snapshot: { log = s, meta = s, views =
-- { name = s }, other = { name = s } }, each s { entries, bytes }.
function DB:tables() check_self(self, "tables") return self._c:tables() end

--- Copies the database into the folder `dest` (existing, holding no
-- database) as it was at one moment, while writers go on. Options:
-- `compact` (default true: free pages left out), `progress` (called with
-- the bytes written so far).
function DB:backup(dest, opts)
  check_self(self, "backup")
  opts = check_opts(opts, "backup") or {}
  self._c:backup(dest, opts.compact ~= false, opts.progress)
end

--- Reads every stored entry and checks it, in a child process (a damaged
-- page cannot take this one down): { entries, tables = { name... },
-- damaged = { what... }, crashed = true | nil }.
function DB:verify()
  check_self(self, "verify")
  if self.path == nil then raise("EINVAL", "a memory database has no file") end
  return core.verify(self.path)
end

return M
