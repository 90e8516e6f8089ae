--- The `flume` command: look inside, feed, watch and maintain a database
-- from the shell.
--
--   os.exit(require("flume.cli").main(arg), true)   -- views-lua/bin/flume
--
-- Exit codes: 0 success, 1 error (one line `flume: ...` on stderr), 2 usage.
--
-- Commands that only read (get, cat, status without --view, backup) go
-- through flume.tools, a read-only LMDB handle that takes no write lock, so
-- they work beside a process writing the database. The others open it with
-- flume.open, which one process at a time may do.
--
-- JSON Lines go through flume.json, which round-trips every value the log
-- holds exactly (int64 integers, floats with their type and sign, [] and
-- {}, and tagged forms for what JSON cannot say); see its header.
--
-- The progress bar shows on stderr when it is a terminal, once an operation
-- has run for FLUME_PROGRESS_DELAY seconds (default 1; the tests set 0).
local flume = require "flume"
-- The command reports warnings in its own output (see `status`).
flume.warn = function() end

local core = flume.core
local clock = core.hrtime
local stderr, stdout = io.stderr, io.stdout
local fmt, concat, sort = string.format, table.concat, table.sort
local mtype, maxinteger = math.type, math.maxinteger

local M = {}

-- Errors ----------------------------------------------------------------------

local Exit = {} -- metatable of the errors that end a command with a code

local function fail(msg, code)
  error(setmetatable({ msg = msg, code = code or 1 }, Exit), 0)
end

local function usage(msg) fail(msg, 2) end

--- A flume error string ("flume: ECODE: ...") or any other as one line.
local function one_line(e)
  e = tostring(e):gsub("^flume: ", "")
  e = e:match("^(.-)\nstack traceback:") or e
  return (e:gsub("%s*\n%s*", "; "))
end

-- flume.tools -----------------------------------------------------------------

--- The read-only helpers, from the library that holds flume.core (which
-- registers them in package.preload).
local function load_tools() return require "flume.tools" end

-- JSON ------------------------------------------------------------------------

local json = require "flume.json"
local array = json.array
local to_json = json.encode

--- A key's text, to order keys of any type.
local function key_string(k)
  if type(k) == "string" then return k end
  return to_json(k)
end

--- Parses a line of JSON into a value for the log; raises a message
-- (without the "flume: " prefix, which the command adds).
local function parse_json(line)
  local ok, v = pcall(json.decode, line)
  if not ok then
    error("bad JSON: " .. tostring(v):gsub("^flume: EINVAL: ", ""), 0)
  end
  return v
end

-- Formatting ------------------------------------------------------------------

local function human_size(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do
    n, i = n / 1024, i + 1
  end
  return i == 1 and fmt("%d B", n) or fmt("%.1f %s", n, units[i])
end

local function duration(s)
  s = math.floor(s + 0.5)
  if s >= 3600 then
    return fmt("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60)
  end
  return fmt("%d:%02d", s // 60, s % 60)
end

-- Progress --------------------------------------------------------------------

local Progress = {}
Progress.__index = Progress

local DELAY = tonumber(os.getenv("FLUME_PROGRESS_DELAY") or "") or 1

--- A progress bar on stderr. `unit` is "values" (the default) or "bytes".
-- It stays silent unless stderr is a terminal and --quiet was not given,
-- and until the operation has run for a second.
local function progress(ctx, label, unit)
  local tools = ctx.tools
  return setmetatable({
    label = label, unit = unit or "values", start = clock(), last = 0,
    shown = false, done = 0, total = nil, count = 0,
    enabled = not ctx.quiet and tools.isatty(2) and
      os.getenv("TERM") ~= "dumb",
    columns = tools.columns(2) or 80,
  }, Progress)
end

function Progress:draw(now, final)
  local elapsed = now - self.start
  local rate = elapsed > 0 and self.count / elapsed or 0
  local speed = self.unit == "bytes" and human_size(rate) .. "/s" or
    fmt("%.0f values/s", rate)
  local tail
  if final then
    tail = fmt("%s  in %s", speed, duration(elapsed))
  elseif self.total and self.total > 0 and self.done > 0 then
    local left = elapsed * (self.total - self.done) / self.done
    tail = fmt("%s  ETA %s", speed, duration(left))
  else
    tail = speed
  end
  local line
  if self.total then
    local frac = self.total > 0 and math.min(self.done / self.total, 1) or 1
    if final then frac = 1 end
    local pct = fmt("%3d%%", math.floor(frac * 100))
    local width = self.columns - #self.label - 48
    if width > 30 then width = 30 end
    if width < 10 then width = 10 end
    local full = math.floor(frac * width + 0.5)
    line = fmt("%s [%s%s] %s  %s", self.label, ("#"):rep(full),
      (" "):rep(width - full), pct, tail)
  else
    local n = self.unit == "bytes" and human_size(self.count) or
      fmt("%d values", self.count)
    line = fmt("%s  %s  %s", self.label, n, tail)
  end
  stderr:write("\r\27[K", line)
  if final then stderr:write("\n") end
  stderr:flush()
  self.shown, self.last = true, now
end

--- Reports `done` of `total` (nil: unknown), `count` values (or bytes) so
-- far for the rate (default: done).
function Progress:update(done, total, count)
  self.done, self.total, self.count = done, total, count or done
  if not self.enabled then return end
  local now = clock()
  if now - self.start < DELAY or now - self.last < 0.1 then return end
  self:draw(now)
end

--- Ends the bar at 100%, if it showed or the work took long enough.
function Progress:finish()
  if not self.enabled then return end
  local now = clock()
  if self.shown or now - self.start >= DELAY then
    if self.total then self.done = self.total end
    self:draw(now, true)
  end
end

--- Ends the bar where it is (on an error).
function Progress:abort()
  if self.shown then stderr:write("\n") end
end

-- Arguments -------------------------------------------------------------------

-- Options every command takes.
local COMMON = {
  ["--help"] = "flag", ["-h"] = "--help",
  ["--quiet"] = "flag", ["-q"] = "--quiet",
}

--- Splits args into options (by the command's spec) and positionals.
local function parse_args(args, spec, first)
  local opts, pos = {}, {}
  local i, only_pos = first, false
  while i <= #args do
    local a = args[i]
    if only_pos or a == "-" or not a:find("^%-") or a:find("^%-%d") then
      pos[#pos + 1] = a
    elseif a == "--" then
      only_pos = true
    else
      local name, value = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local kind = spec[name] or COMMON[name]
      if type(kind) == "string" and kind:find("^%-") then
        name, kind = kind, spec[kind] or COMMON[kind]
      end
      if kind == nil then usage("unknown option " .. a) end
      if kind == "flag" then
        if value then usage("option " .. name .. " takes no value") end
        opts[name:sub(3)] = true
      else
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then usage("option " .. name .. " needs a value") end
        end
        if kind == "int" then
          local n = math.tointeger(tonumber(value))
          if not n then
            usage("option " .. name .. " needs an integer, not " .. value)
          end
          value = n
        end
        if kind == "list" then
          local l = opts[name:sub(3)] or {}
          l[#l + 1] = value
          value = l
        end
        opts[name:sub(3)] = value
      end
    end
    i = i + 1
  end
  return opts, pos
end

-- Databases -------------------------------------------------------------------

local function exists(ctx, dir)
  local st = ctx.tools.stat(dir .. "/data.mdb")
  return st and st.type == "file"
end

local function need_db(ctx, dir)
  if not exists(ctx, dir) then
    local st = ctx.tools.stat(dir)
    if not st then
      fail(dir .. ": no such folder (create a database with: flume init " ..
        dir .. ")")
    end
    fail(dir .. ": no flume database here (create one with: flume init " ..
      dir .. ")")
  end
end

local CODECS = { msgpack = true, raw = true }

--- The folder's read-only handle, checked: format, and a codec we decode
-- unless any_codec.
local function open_ro(ctx, dir, any_codec)
  need_db(ctx, dir)
  local env = ctx.tools.open(dir)
  ctx.envs[#ctx.envs + 1] = env
  local ok, meta = pcall(env.meta, env)
  if not ok then
    if tostring(meta):find("ECORRUPT") then
      fail(dir .. ": not a flume database (no flume metadata in its LMDB " ..
        "environment)")
    end
    error(meta, 0)
  end
  if meta.format ~= ctx.tools.format then
    fail(fmt("EFORMAT: %s has format version %s; this flume reads %s", dir,
      tostring(meta.format), ctx.tools.format))
  end
  if not any_codec and not CODECS[meta.codec] then
    fail(fmt("ECODEC: %s uses the codec '%s', which the command line " ..
      "cannot decode (it knows msgpack and raw)", dir, tostring(meta.codec)))
  end
  return env, meta
end

local function close_ro(ctx, env)
  env:close()
  for i, e in ipairs(ctx.envs) do
    if e == env then table.remove(ctx.envs, i) break end
  end
end

--- Opens the database for writing, with the codec it was made with.
local function open_db(ctx, dir)
  local env, meta = open_ro(ctx, dir)
  close_ro(ctx, env) -- one process must not have an LMDB env open twice
  local db = flume.open(dir, { codec = meta.codec })
  ctx.dbs[#ctx.dbs + 1] = db
  return db, meta
end

local function decoder(codec)
  if codec == "raw" then return function(bytes) return bytes end end
  -- marked: an empty array stays one, for JSON ([] and {} differ there)
  return function(bytes) return core.decode(bytes, true) end
end

--- The views given as `--view NAME=SCRIPT` (or `--view SCRIPT`, named
-- after the file) and as positional NAME=SCRIPT: { name = path }, and the
-- names in the order given.
local function view_specs(ctx, extra)
  local specs, order = {}, {}
  local function add(s)
    local name, path = s:match("^([%a_][%w_]*)=(.+)$")
    if not name then
      path = s
      name = s:match("([^/]+)%.lua$")
      if not name or not name:match("^[%a_][%w_]*$") then
        usage("--view takes NAME=SCRIPT (or a SCRIPT.lua whose file " ..
          "name is a Lua identifier), not " .. s)
      end
    end
    if not specs[name] then order[#order + 1] = name end
    specs[name] = path
  end
  for _, s in ipairs(ctx.opts.view or {}) do add(s) end
  for _, s in ipairs(extra or {}) do add(s) end
  return specs, order
end

--- Attaches a view script to db (a path; a file not named *.lua is read and
-- given as source).
local function use(ctx, db, name, path)
  local st = ctx.tools.stat(path)
  if not st or st.type ~= "file" then
    fail(path .. ": no such view script")
  end
  local view = path
  if not path:match("%.lua$") then
    local f = assert(io.open(path, "rb"))
    view = f:read("a")
    f:close()
    if not view:find("\n") then view = view .. "\n" end
  end
  local ok, v = pcall(db.use, db, name, view)
  if not ok then fail(fmt("view '%s' (%s): %s", name, path, one_line(v))) end
  return v
end

--- Runs `wait()` (which waits for views) with a progress bar over the
-- slowest of `views` (a list), counted from `from` (default: where they
-- are now). Also where an interrupt (Ctrl-C) is noticed while waiting.
local function with_progress(ctx, label, views, wait, from)
  local tools = ctx.tools
  local function lowest()
    local low, top = nil, -1
    for _, v in ipairs(views) do
      local s = v:status()
      top = s.log_since
      if not s.failed and (low == nil or s.since < low) then low = s.since end
    end
    return low or top, top
  end
  local base = from or lowest()
  local p = progress(ctx, label)
  local cancel
  local function tick()
    if tools.interrupted() then error("flume: interrupted", 0) end
    local low, top = lowest()
    p:update(low - base, top - base)
    cancel = core.timer(0.1, tick)
  end
  cancel = core.timer(0.1, tick)
  local ok, err = pcall(wait)
  cancel()
  if not ok then
    p:abort()
    error(err, 0)
  end
  local _, top = lowest()
  p:update(top - base, top - base)
  p:finish()
end

--- Waits for each view to catch up; returns { name = error } for those
-- that failed.
local function catch_up(ctx, label, views)
  local list, errors = {}, {}
  for _, v in pairs(views) do list[#list + 1] = v end
  with_progress(ctx, label, list, function()
    for name, v in pairs(views) do
      local ok, err = pcall(v.ready, v)
      if not ok then
        if tostring(err):find("interrupted") then error(err, 0) end
        errors[name] = one_line(err)
      end
    end
  end)
  return errors
end

local function check_interrupt(ctx)
  if ctx.tools.interrupted() then fail("interrupted") end
end

-- Output ----------------------------------------------------------------------

local function out(...)
  local ok, err = stdout:write(...)
  if not ok then
    if tostring(err):find("Broken pipe") then fail("", 0) end
    fail("cannot write the output: " .. tostring(err))
  end
end

-- Commands --------------------------------------------------------------------

local commands, order = {}, {}

local function command(name, def)
  def.name = name
  commands[name] = def
  order[#order + 1] = name
end

command("init", {
  summary = "create a database (or check an existing one)",
  usage = "flume init DIR [--codec msgpack|raw]",
  help = [[
Creates a durable database in the folder DIR (and the folders above it).
If DIR already holds one, says so; with --codec, it must be that codec.

  --codec NAME   how values are stored: msgpack (default: any JSON value)
                 or raw (strings as bytes)]],
  options = { ["--codec"] = "string" },
  args = { 1, 1 },
  run = function(ctx)
    local dir, codec = ctx.args[1], ctx.opts.codec
    if codec ~= nil and not CODECS[codec] then
      usage("--codec must be msgpack or raw, not " .. codec)
    end
    if exists(ctx, dir) then
      local env, meta = open_ro(ctx, dir)
      local since = env:log()
      close_ro(ctx, env)
      if codec and codec ~= meta.codec then
        fail(fmt("ECODEC: %s was written with codec '%s', not '%s'", dir,
          meta.codec, codec))
      end
      out(fmt("%s: already a flume database (codec %s, %d values)\n", dir,
        meta.codec, since + 1))
      return
    end
    local path = ""
    for part in dir:gmatch("[^/]+") do
      path = (path == "" and dir:sub(1, 1) ~= "/") and part or
        path .. "/" .. part
      if not ctx.tools.stat(path) then
        local ok, err = ctx.tools.mkdir(path)
        if not ok then fail(err) end
      end
    end
    local db = flume.open(dir, { codec = codec or "msgpack" })
    db:close()
    out(fmt("%s: created (codec %s)\n", dir, codec or "msgpack"))
  end,
})

command("append", {
  summary = "append JSON Lines from stdin; prints the last seq",
  usage = "flume append DIR [--batch N]",
  help = [[
Reads one JSON value per line on stdin and appends them to the log, then
prints the last seq. Blank lines are skipped. Every line is parsed before
anything is appended: a bad line is reported with its number, and nothing of
its batch is appended. Numbers without a fraction or exponent are int64
integers (beyond that range: an error), the others floats; a null in an
object leaves the field out. What `flume cat --values` prints comes back
exactly, tags included ({"$float":"inf"}, {"$bytes":"ff"}, {"$map": ...}:
see the README). A raw database takes JSON strings only.

  --batch N   append every N lines as they come (each batch all or
              nothing, for endless or huge input); default: the whole
              input is one batch]],
  options = { ["--batch"] = "int" },
  args = { 1, 1 },
  run = function(ctx)
    local dir, size = ctx.args[1], ctx.opts.batch
    if size ~= nil and size < 1 then usage("--batch must be at least 1") end
    local db = open_db(ctx, dir)
    local raw = db.codec == "raw"
    local input = io.stdin
    local total -- bytes on stdin, when it is a file
    local here = input:seek("cur")
    if here then
      local last = input:seek("end")
      if last then total = last - here end
      input:seek("set", here)
    end
    local p = progress(ctx, "appending", "values")
    local values, n, first, lineno, bytes = {}, 0, 1, 0, 0
    local appended, last = 0, nil
    local function flush()
      if n > 0 then
        last = db:append(values, { batch = true, encoded = true })
        appended = appended + n
      end
      values, n, first = {}, 0, lineno + 1
    end
    for line in input:lines("L") do
      lineno = lineno + 1
      bytes = bytes + #line
      line = line:gsub("\r?\n$", "")
      if line:find("%S") then
        local ok, v = pcall(parse_json, line)
        if ok and raw and type(v) ~= "string" then
          ok, v = false, "a raw database stores strings, not " .. type(v) ..
            "s"
        end
        -- Encoded here, so that a value the log cannot take names its line
        -- and null (nil) has a place in the batch.
        if ok and not raw then ok, v = pcall(core.encode, v) end
        if not ok then
          p:abort()
          local what = appended == 0 and "nothing was appended" or
            fmt("nothing from line %d on was appended (%d values before " ..
              "it were, up to seq %d)", first, appended, last)
          fail(fmt("line %d: %s: %s", lineno, v, what))
        end
        n = n + 1
        values[n] = v
        if size and n >= size then flush() end
      end
      if lineno % 1000 == 0 then
        check_interrupt(ctx)
        if total then p:update(bytes, total, appended + n)
        else p:update(appended + n, nil) end
      end
    end
    flush()
    if total then p:update(bytes, total, appended)
    else p:update(appended, nil) end
    p:finish()
    out(fmt("%d\n", last or db.since))
  end,
})

command("get", {
  summary = "print the value at a seq as JSON",
  usage = "flume get DIR SEQ",
  help = [[
Prints the value at SEQ as JSON. A negative SEQ counts from the end: -1 is
the last value. Works while another process writes the database.]],
  options = {},
  args = { 2, 2 },
  run = function(ctx)
    local dir = ctx.args[1]
    local seq = math.tointeger(tonumber(ctx.args[2]))
    if not seq then usage("SEQ must be an integer, not " .. ctx.args[2]) end
    local env, meta = open_ro(ctx, dir)
    local since = env:log()
    if seq < 0 then seq = since + 1 + seq end
    local seqs, vals = {}, {}
    if seq < 0 or env:read(seq, seq, false, 1, seqs, vals) == 0 then
      fail(fmt("ENOTFOUND: no value at seq %s in %s (%s)", ctx.args[2], dir,
        since < 0 and "the log is empty" or
        fmt("it holds seqs 0 to %d", since)))
    end
    out(to_json(decoder(meta.codec)(vals[1])), "\n")
  end,
})

command("cat", {
  summary = "print a range of the log as JSON Lines",
  usage = "flume cat DIR [--gt|--gte|--lt|--lte SEQ] [--reverse] " ..
    "[--limit N] [--live] [--values]",
  help = [[
Prints values as JSON Lines, one {"seq": S, "value": V} per line, in seq
order. Works while another process writes the database.

  --gt, --gte, --lt, --lte SEQ   the range of seqs
  --reverse                      newest first
  --limit N                      at most N values
  --live                         then wait for new values and print them as
                                 they are appended, until Ctrl-C
  --values                       the values alone, one per line: what
                                 `flume append` reads]],
  options = {
    ["--gt"] = "int", ["--gte"] = "int", ["--lt"] = "int", ["--lte"] = "int",
    ["--reverse"] = "flag", ["--limit"] = "int", ["--live"] = "flag",
    ["--values"] = "flag",
  },
  args = { 1, 1 },
  run = function(ctx)
    local o, tools = ctx.opts, ctx.tools
    if o.live and o.reverse then usage("--live cannot be --reverse") end
    if o.limit and o.limit < 0 then usage("--limit cannot be negative") end
    local env, meta = open_ro(ctx, ctx.args[1])
    local decode = decoder(meta.codec)
    -- Inclusive bounds; --gt at the largest seq and --lt at the smallest
    -- exclude everything (moving them by one would wrap around).
    local lo, hi = o.gte, o.lte
    if lo == nil then lo = o.gt and o.gt < maxinteger and o.gt + 1 or 0 end
    if hi == nil then
      hi = o.lt and o.lt > math.mininteger and o.lt - 1 or maxinteger
    end
    if o.gte == nil and o.gt == maxinteger or
      o.lte == nil and o.lt == math.mininteger then
      lo, hi = 0, -1
    end
    if lo < 0 then lo = 0 end
    local remaining = o.limit or maxinteger
    local reverse = o.reverse and true or false
    local nxt = reverse and hi or lo
    local since = env:log()
    local p = progress(ctx, "reading")
    local total = math.max(0, math.min(hi, since) - math.max(lo, 0) + 1)
    if remaining < total then total = remaining end
    local count = 0
    if o.live then tools.trap_sigint() end
    local seqs, vals = {}, {}
    while remaining > 0 and lo <= hi do
      if reverse and nxt < lo or not reverse and nxt > hi then break end
      local n = env:read(reverse and lo or nxt, reverse and nxt or hi, reverse,
        math.min(remaining, 256), seqs, vals)
      for i = 1, n do
        if o.values then
          out(to_json(decode(vals[i])), "\n")
        else
          out('{"seq":', seqs[i], ',"value":', to_json(decode(vals[i])),
            "}\n")
        end
      end
      if n > 0 then
        remaining, count = remaining - n, count + n
        nxt = reverse and seqs[n] - 1 or seqs[n] + 1
        if o.live then stdout:flush()
        else p:update(count, total) end
        check_interrupt(ctx)
      elseif not o.live then
        break
      else
        stdout:flush()
        tools.sleep(0.1)
        if tools.interrupted() then break end
      end
    end
    if not o.live then p:finish() end
  end,
})

--- What `status` reports about one view: from its record as stored
-- before (rec), and if it was attached, from the runtime (info).
local function view_report(name, rec, info, err, since, tables)
  local r = { name = name, attached = info ~= nil, warnings = array {} }
  local src = info or rec
  r.kind, r.version, r.since, r.hash = src.kind, src.version, src.since,
    src.hash
  if rec and rec.hash ~= r.hash then r.stored_hash = rec.hash end
  r.lag = since - r.since
  local t = tables.views[name]
  r.state_size = t and t.bytes or 0
  r.entries = t and t.entries or 0
  if info and info.script_changed then
    r.warnings[#r.warnings + 1] = "script changed without a version bump: " ..
      "its state was built by the old script (bump the version to rebuild it)"
  end
  if rec and info and rec.version ~= info.version then
    r.warnings[#r.warnings + 1] = fmt("version changed from %d to %d: " ..
      "rebuilt", rec.version, info.version)
  end
  if not info and not rec then r.warnings[#r.warnings + 1] = "no record" end
  r.error = err or (info and info.error and one_line(info.error)) or nil
  return r
end

local function print_table(rows, indent)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, #cell)
    end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i == #row and cell or cell .. (" "):rep(widths[i] - #cell)
    end
    out(indent, concat(cells, "  "), "\n")
  end
end

command("status", {
  summary = "the log and every view: since, sizes, lag, warnings, errors",
  usage = "flume status DIR [--view NAME=SCRIPT]... [--json] [--no-wait]",
  help = [[
Shows the log (since, entries, size on disk, codec, format version) and
every view the database has a record of (kind, version, since, lag behind
the log, size of its state, script hash). Views are not stored with their
scripts: give a view's script with --view to attach it, which also checks
it (a script changed without a version bump is a warning), lets it catch up
with the log and shows its last error. Without --view, status only reads,
and works while another process writes the database.

  --view NAME=SCRIPT   attach this view script (repeatable); --view
                       SCRIPT.lua names the view after the file
  --no-wait            do not wait for attached views to catch up
  --json               one JSON object instead of text]],
  options = { ["--view"] = "list", ["--json"] = "flag",
    ["--no-wait"] = "flag" },
  args = { 1, 1 },
  run = function(ctx)
    local dir = ctx.args[1]
    local specs, names = view_specs(ctx)
    local env, meta = open_ro(ctx, dir, #names == 0)
    local before = meta.views
    close_ro(ctx, env)
    local infos, errors = {}, {}
    if #names > 0 then
      local db = open_db(ctx, dir)
      local views = {}
      for _, name in ipairs(names) do
        views[name] = use(ctx, db, name, specs[name])
      end
      if not ctx.opts["no-wait"] then
        errors = catch_up(ctx, "catching up", views)
      end
      for name, v in pairs(views) do infos[name] = v:status() end
      db:close()
    end
    env, meta = open_ro(ctx, dir, true)
    local since, entries = env:log()
    local tables, info = env:tables(), env:info()
    close_ro(ctx, env)
    local st = ctx.tools.stat(dir .. "/data.mdb")
    local report = {
      path = dir, format = meta.format, codec = meta.codec, since = since,
      entries = entries, size = st and st.size or 0, used = info.used,
      log_size = tables.log and tables.log.bytes or 0, views = array {},
    }
    local all = {}
    for name in pairs(meta.views) do all[#all + 1] = name end
    for _, name in ipairs(names) do
      if not meta.views[name] then all[#all + 1] = name end
    end
    sort(all)
    for _, name in ipairs(all) do
      report.views[#report.views + 1] = view_report(name,
        before[name] or meta.views[name], infos[name], errors[name], since,
        tables)
    end
    if ctx.opts.json then
      out(to_json(report), "\n")
      return
    end
    out(fmt("database  %s\n", dir))
    out(fmt("log       since %d (%d entries), %s on disk (%s in use), " ..
      "codec %s, format %s\n", since, entries, human_size(report.size),
      human_size(report.used), report.codec, report.format))
    if #report.views == 0 then
      out("views     none\n")
      return
    end
    out(fmt("views     %d\n", #report.views))
    local rows = { { "name", "kind", "version", "since", "lag", "state",
      "script hash" } }
    local unattached = 0
    for _, v in ipairs(report.views) do
      rows[#rows + 1] = { v.name, v.kind, tostring(v.version),
        tostring(v.since), tostring(v.lag), human_size(v.state_size),
        v.hash }
      if not v.attached then unattached = unattached + 1 end
    end
    print_table(rows, "  ")
    for _, v in ipairs(report.views) do
      for _, w in ipairs(v.warnings) do
        out(fmt("  %s: warning: %s\n", v.name, w))
      end
      if v.error then out(fmt("  %s: error: %s\n", v.name, v.error)) end
    end
    if unattached > 0 then
      out(fmt("  (%s as stored: --view NAME=SCRIPT attaches and checks a " ..
        "view)\n", unattached == #report.views and "all" or
        unattached .. " of " .. #report.views))
    end
  end,
})

--- Prints a view's whole content: a reduce view's state, or every entry
-- of a group or index view as JSON Lines.
local function dump_view(v, opts)
  if v._kind == "reduce" then
    out(to_json(v:get()), "\n")
  elseif v._kind == "group" then
    for key, acc in v:read(opts) do
      out(to_json({ key = key, value = acc }), "\n")
    end
  else
    for key, seq, value in v:read(opts) do
      out(to_json({ key = key, seq = seq, value = value }), "\n")
    end
  end
end

local function method_names(v)
  local names = { "get", "status" }
  if v._kind ~= "reduce" then names[#names + 1] = "read" end
  for name in pairs(v._methods or {}) do names[#names + 1] = name end
  sort(names)
  return concat(names, ", ")
end

command("view", {
  summary = "attach a view script and call one of its methods",
  usage = "flume view DIR NAME SCRIPT [METHOD [ARG...]]",
  help = [[
Attaches the view script SCRIPT to the database as NAME, lets it catch up
with the log, and calls METHOD with the ARGs, printing the result as JSON
(a source method's values, and read's entries, as JSON Lines). Each ARG is
read as JSON if it parses, else taken as a string: `get post` and
`get '"post"'` are the same; `get 42` passes a number.

Methods: get [KEY] (a reduce view's state, or KEY's accumulator or indexed
values), read [OPTIONS] (group and index views; OPTIONS a JSON object such
as '{"gte": "a", "limit": 10, "reverse": true}'), status, and the script's
own methods. Without METHOD: the view's whole content.]],
  options = {},
  args = { 3, maxinteger },
  run = function(ctx)
    local dir, name, script, method = table.unpack(ctx.args, 1, 4)
    local db = open_db(ctx, dir)
    local v = use(ctx, db, name, script)
    local err = catch_up(ctx, "catching up", { [name] = v })[name]
    if err then fail(err) end
    local args = {}
    for i = 5, #ctx.args do
      local a = ctx.args[i]
      -- JSON, or else the word itself as a string
      local ok, value = pcall(parse_json, a)
      if not ok then
        if a:find("^%s*[%[{\"]") then
          fail(fmt("argument %d: %s", i - 4, value))
        end
        value = a
      end
      args[i - 4] = value
    end
    if method == nil then
      dump_view(v)
    elseif method == "status" then
      out(to_json(v:status()), "\n")
    elseif method == "read" and v._kind ~= "reduce" then
      local opts = args[1]
      if opts ~= nil and type(opts) ~= "table" then
        usage("read takes a JSON object of options, such as " ..
          '\'{"gte": "a", "limit": 10}\'')
      end
      dump_view(v, opts or {})
    elseif method == "get" then
      local res = v:get(table.unpack(args, 1, #ctx.args - 4))
      if v._kind == "index" then array(res) end
      out(to_json(res), "\n")
    elseif v._methods and v._methods[method] then
      local res = v[method](v, table.unpack(args, 1, #ctx.args - 4))
      if v._methods[method] == "source" then
        for x in res do out(to_json(x), "\n") end
      else
        out(to_json(res), "\n")
      end
    else
      fail(fmt("view '%s' has no method '%s' (it has: %s)", name, method,
        method_names(v)))
    end
  end,
})

--- The views a maintenance command works on: all given, or only NAME.
local function pick_views(ctx, dir, meta)
  local extra, only = {}, nil
  for i = 2, #ctx.args do
    local a = ctx.args[i]
    if a:find("=") then extra[#extra + 1] = a
    elseif only then usage("one NAME at most")
    else only = a end
  end
  local specs, names = view_specs(ctx, extra)
  if only then
    if specs[only] then return { only }, specs end
    if meta.views[only] then
      usage(fmt("view '%s' needs its script: pass --view %s=SCRIPT", only,
        only))
    end
    fail(fmt("no view named '%s' in %s", only, dir))
  end
  if #names == 0 then
    local have = {}
    for n in pairs(meta.views) do have[#have + 1] = n end
    sort(have)
    usage("views are not stored with their scripts: pass --view " ..
      "NAME=SCRIPT for each" .. (#have > 0 and
      " (" .. dir .. " has: " .. concat(have, ", ") .. ")" or ""))
  end
  return names, specs
end

--- Opens DIR for writing and attaches the views of the command line (or
-- all the database records): returns db, their names in order,
-- views[name], and specs[name] (each one's script).
local function attach_views(ctx, dir)
  local env, meta = open_ro(ctx, dir)
  close_ro(ctx, env)
  local names, specs = pick_views(ctx, dir, meta)
  local db = open_db(ctx, dir)
  local views = {}
  for _, name in ipairs(names) do
    views[name] = use(ctx, db, name, specs[name])
  end
  return db, names, views, specs
end

command("rebuild", {
  summary = "destroy views' state and rebuild it from the log",
  usage = "flume rebuild DIR [NAME] --view NAME=SCRIPT...",
  help = [[
Destroys the state of the views given with --view (or only of NAME) and
rebuilds it from the log, with a progress bar.

  --view NAME=SCRIPT   a view and its script (repeatable); a positional
                       NAME=SCRIPT is the same]],
  options = { ["--view"] = "list" },
  args = { 1, maxinteger },
  run = function(ctx)
    local dir = ctx.args[1]
    local db, names, views = attach_views(ctx, dir)
    local list = {}
    for i, name in ipairs(names) do list[i] = views[name] end
    local t0 = clock()
    with_progress(ctx, "rebuilding", list, function() db:rebuild() end, -1)
    out(fmt("rebuilt %s from %d values in %.2f s\n", concat(names, ", "),
      db.since + 1, clock() - t0))
  end,
})

-- verify ----------------------------------------------------------------------

local function deep_diff(a, b, path)
  if type(a) == "table" and type(b) == "table" then
    local keys = {}
    for k in pairs(a) do keys[#keys + 1] = k end
    for k in pairs(b) do
      if a[k] == nil then keys[#keys + 1] = k end
    end
    sort(keys, function(x, y) return key_string(x) < key_string(y) end)
    for _, k in ipairs(keys) do
      local p, x, y = deep_diff(a[k], b[k],
        path .. (type(k) == "string" and k:match("^[%a_][%w_]*$") and
          "." .. k or "[" .. to_json(k) .. "]"))
      if p then return p, x, y end
    end
    return nil
  end
  if a == b then return nil end
  return path, a, b
end

local function show(v)
  if v == nil then return "(none)" end
  return to_json(v)
end

--- Compares a view's stored state with one recomputed from the log.
-- Returns the number of differences, a list of where (the first few) and
-- how many keys or entries it looked at.
local function compare(ctx, stored, fresh)
  local kind, found, where, seen = stored._kind, 0, {}, 0
  local function report(msg)
    found = found + 1
    if #where < 5 then where[#where + 1] = msg end
  end
  if kind == "reduce" then
    local path, a, b = deep_diff(stored:get(), fresh:get(), "state")
    if path then
      report(fmt("%s: stored %s, recomputed %s", path, show(a), show(b)))
    end
    return found, where, 1
  end
  local index = kind == "index"
  local key_encode = core.key_encode
  local function cursor(v)
    local it = v:read {}
    return function()
      local key, x = it()
      if key == nil then return nil end
      -- index entries are ordered by key then seq
      local order = index and key_encode(key) .. fmt("%020d", x) or
        key_encode(key)
      return order, key, x
    end
  end
  local a, b = cursor(stored), cursor(fresh)
  local oa, ka, xa = a()
  local ob, kb, xb = b()
  while oa ~= nil or ob ~= nil do
    seen = seen + 1
    if seen % 1000 == 0 then check_interrupt(ctx) end
    if ob == nil or (oa ~= nil and oa < ob) then
      report(index and fmt("key %s: stored an entry for seq %d that the " ..
        "log does not give", to_json(ka), xa) or
        fmt("key %s: stored %s, recomputed (none)", to_json(ka), show(xa)))
      oa, ka, xa = a()
    elseif oa == nil or ob < oa then
      report(index and fmt("key %s: no stored entry for seq %d", to_json(kb),
        xb) or
        fmt("key %s: stored (none), recomputed %s", to_json(kb), show(xb)))
      ob, kb, xb = b()
    else
      if not index then
        local path, x, y = deep_diff(xa, xb, "")
        if path then
          report(fmt("key %s%s: stored %s, recomputed %s", to_json(ka), path,
            show(x), show(y)))
        end
      end
      oa, ka, xa = a()
      ob, kb, xb = b()
    end
  end
  return found, where, seen
end

--- Reads every entry of every table of dir, checking its checksum, in a
-- child process (a damaged page can crash LMDB): prints what is damaged
-- and fails if anything is.
local function verify_storage(ctx, dir)
  need_db(ctx, dir)
  local r = ctx.tools.verify(dir)
  if r.error then fail(r.error) end
  for _, d in ipairs(r.damaged) do out("damaged: ", d, "\n") end
  if r.crashed then out("damaged: ", r.crashed, "\n") end
  local bad = #r.damaged + (r.crashed and 1 or 0)
  if bad > 0 then
    fail(fmt("ECORRUPT: verify: %s has %d damaged %s%s", dir, bad,
      bad == 1 and "place" or "places", r.crashed and
      " (a damaged page stopped the walk: what follows it was not read)" or
      ""))
  end
  return r
end

command("verify", {
  summary = "check every stored entry, recompute views and compare",
  usage = "flume verify DIR [NAME] [--view NAME=SCRIPT]...",
  help = [[
First reads every entry of the database (the log, every view's state, the
metadata) and checks its checksum, in a child process so that a damaged
page cannot crash the command; prints each damaged entry and exits with 1
if there is any. Then recomputes the views given with --view (or only
NAME) from the log into a scratch database in memory and compares the
result with their stored state, key by key. Prints where they differ;
exits with 1 if any does. With views, it attaches them, so it needs the
database to itself: to verify one a writer has open, verify a backup.

  --view NAME=SCRIPT   a view and its script (repeatable); a positional
                       NAME=SCRIPT is the same]],
  options = { ["--view"] = "list" },
  args = { 1, maxinteger },
  run = function(ctx)
    local dir = ctx.args[1]
    local checked = verify_storage(ctx, dir)
    if #ctx.args == 1 and #(ctx.opts.view or {}) == 0 then
      local env, meta = open_ro(ctx, dir, true)
      close_ro(ctx, env)
      local have = {}
      for n in pairs(meta.views) do have[#have + 1] = n end
      sort(have)
      out(fmt("storage: ok (%d entries in %d tables)\n", checked.entries,
        #checked.tables - 1))
      if #have > 0 then
        out(fmt("views not recomputed (%s): pass --view NAME=SCRIPT for " ..
          "each\n", concat(have, ", ")))
      end
      return
    end
    local db, names, stored, specs = attach_views(ctx, dir)
    local errors = catch_up(ctx, "catching up", stored)
    -- the scratch copy of the log
    local scratch = flume.open(nil, { codec = db.codec })
    ctx.dbs[#ctx.dbs + 1] = scratch
    local p = progress(ctx, "copying the log")
    local batch, n, total = {}, 0, db.since + 1
    for _, value in db:stream() do
      n = n + 1
      batch[#batch + 1] = value
      if #batch == 1000 then
        scratch:append(batch, { batch = true })
        batch = {}
        p:update(n, total)
        check_interrupt(ctx)
      end
    end
    if #batch > 0 then scratch:append(batch, { batch = true }) end
    p:update(n, total)
    p:finish()
    local fresh = {}
    for _, name in ipairs(names) do
      fresh[name] = use(ctx, scratch, name, specs[name])
    end
    local fresh_errors = catch_up(ctx, "recomputing", fresh)
    local bad = 0
    for _, name in ipairs(names) do
      local e1, e2 = errors[name], fresh_errors[name]
      if e1 or e2 then
        bad = bad + 1
        out(fmt("%s: failed: %s\n", name, e1 or e2))
      else
        local found, where, seen = compare(ctx, stored[name], fresh[name])
        local kind = stored[name]._kind
        if found == 0 then
          local what = kind == "reduce" and "" or fmt(", %d %s%s", seen,
            kind == "index" and "entr" or "key",
            kind == "index" and (seen == 1 and "y" or "ies") or
            (seen == 1 and "" or "s"))
          out(fmt("%s: ok (%s%s, since %d)\n", name, kind, what, db.since))
        else
          bad = bad + 1
          out(fmt("%s: DIFFERS from the log in %d place%s:\n", name, found,
            found == 1 and "" or "s"))
          for _, w in ipairs(where) do out("  ", w, "\n") end
          if found > #where then
            out(fmt("  ... and %d more\n", found - #where))
          end
        end
      end
    end
    if bad > 0 then
      fail(fmt("verify: %d of %d view%s of %s differ from the log", bad,
        #names, #names == 1 and "" or "s", dir))
    end
  end,
})

command("backup", {
  summary = "a consistent, compacted copy, even while a writer runs",
  usage = "flume backup DIR DEST [--no-compact]",
  help = [[
Copies the database in DIR into DEST (a new or empty folder) as it was at
one moment, while another process may go on writing it: LMDB's
mdb_env_copy2 under a read transaction. The copy is compacted (free pages
left out) unless --no-compact. It holds the log and every view's state;
open it as any database.

  --no-compact   copy the file page for page]],
  options = { ["--no-compact"] = "flag" },
  args = { 2, 2 },
  run = function(ctx)
    local dir, dest = ctx.args[1], ctx.args[2]
    local tools = ctx.tools
    local env = open_ro(ctx, dir)
    local st = tools.stat(dest)
    if st and st.type ~= "dir" then fail(dest .. ": exists, not a folder") end
    if st and (tools.stat(dest .. "/data.mdb") or
        tools.stat(dest .. "/lock.mdb")) then
      fail(dest .. ": not empty (backup writes a new database)")
    end
    local made = false
    if not st then
      local ok, err = tools.mkdir(dest)
      if not ok then fail(err) end
      made = true
    end
    local used = env:info().used
    local p = progress(ctx, "copying", "bytes")
    local ok, err = pcall(env.copy, env, dest, not ctx.opts["no-compact"],
      function(bytes)
        if tools.interrupted() then error("flume: interrupted", 0) end
        p:update(bytes, used)
      end)
    close_ro(ctx, env)
    if not ok then
      p:abort()
      os.remove(dest .. "/data.mdb")
      os.remove(dest .. "/lock.mdb")
      if made then os.remove(dest) end
      error(err, 0)
    end
    local size = tools.stat(dest .. "/data.mdb").size
    p:update(size, size)
    p:finish()
    local copy = open_ro(ctx, dest)
    local since = copy:log()
    close_ro(ctx, copy)
    out(fmt("%s: backup of %s at since %d (%d values), %s\n", dest, dir,
      since, since + 1, human_size(size)))
  end,
})

-- Main ------------------------------------------------------------------------

local function main_help()
  local lines = {
    "usage: flume COMMAND [ARGS...] [--quiet]",
    "",
    "Looks inside, feeds, watches and maintains a flume database (a folder).",
    "",
    "commands:",
  }
  for _, name in ipairs(order) do
    lines[#lines + 1] = fmt("  %-8s %s", name, commands[name].summary)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Every command takes --help, and --quiet (-q: no " ..
    "progress bar)."
  lines[#lines + 1] = "Run `flume COMMAND --help` for its arguments and " ..
    "options."
  lines[#lines + 1] = "Exit codes: 0 success, 1 error, 2 bad usage."
  return concat(lines, "\n") .. "\n"
end

local function command_help(def)
  return fmt("usage: %s\n\n%s\n\n  --quiet, -q    no progress bar\n" ..
    "  --help, -h     this help\n", def.usage, def.help)
end

local function run(ctx, args)
  local first = args[1]
  local quiet = false
  local i = 1
  while args[i] == "-q" or args[i] == "--quiet" do
    quiet, i = true, i + 1
  end
  first = args[i]
  if first == nil then
    stderr:write(main_help())
    return 2
  end
  if first == "--help" or first == "-h" or first == "help" then
    local topic = first == "help" and args[i + 1]
    if topic then
      local def = commands[topic]
      if not def then usage("no command named " .. topic) end
      out(command_help(def))
    else
      out(main_help())
    end
    return 0
  end
  if first == "--version" then
    out("flume ", flume.version, "\n")
    return 0
  end
  local def = commands[first]
  if not def then
    usage("unknown command " .. first .. " (see flume --help)")
  end
  ctx.command = def
  local opts, pos = parse_args(args, def.options, i + 1)
  if opts.help then
    out(command_help(def))
    return 0
  end
  ctx.quiet = quiet or opts.quiet
  if #pos < def.args[1] then
    usage("missing arguments: " .. def.usage)
  end
  if #pos > def.args[2] then
    usage("too many arguments: " .. def.usage)
  end
  ctx.opts, ctx.args = opts, pos
  ctx.tools.trap_sigint()
  def.run(ctx)
  return 0
end

--- Runs the command line `args` (a list of strings, as `arg`); returns the
-- exit code: 0 success, 1 error, 2 usage.
function M.main(args)
  local ctx = { dbs = {}, envs = {}, quiet = false }
  local ok, err = pcall(function()
    ctx.tools = load_tools()
    return run(ctx, args)
  end)
  for _, env in ipairs(ctx.envs) do pcall(env.close, env) end
  for i = #ctx.dbs, 1, -1 do pcall(ctx.dbs[i].close, ctx.dbs[i]) end
  stdout:flush()
  if ok then return err end
  local code, msg = 1, nil
  if getmetatable(err) == Exit then
    code, msg = err.code, err.msg
  elseif type(err) == "string" and err:find("^flume: ") then
    msg = one_line(err)
  else
    msg = "internal error: " .. one_line(err)
    if os.getenv("FLUME_DEBUG") then stderr:write(tostring(err), "\n") end
  end
  if msg ~= "" then
    if code == 2 and ctx.command then
      msg = msg .. " (see flume " .. ctx.command.name .. " --help)"
    end
    stderr:write("flume: ", msg, "\n")
  end
  return code
end

return M
