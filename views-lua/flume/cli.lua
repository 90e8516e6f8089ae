--- The `flume` command: look inside, feed, watch and maintain a database
-- from the shell.
--
--   os.exit(require("flume.cli").main(arg), true)   -- views-lua/bin/flume
--
-- Exit codes: 0 success, 1 error (one line `flume: ...` on stderr), 2 usage.
--
-- Commands that only read (get, cat, status without --view, backup, verify
-- without --view) open the database read-only (flume.open(dir, { readonly
-- = true }), which takes no write lock), so they work beside a process
-- writing it. The others open it for writing, which one process at a time
-- may do. One process must not have a folder open twice at once (LMDB's
-- rule): a command closes one handle before it opens the next.
--
-- JSON Lines go through flume.json, which round-trips every value the log
-- holds exactly (int64 integers, floats with their type and sign, [] and
-- {}, and tagged forms for what JSON cannot say); see its header.
--
-- The progress bar shows on stderr when it is a terminal, once an operation
-- has run for FLUME_PROGRESS_DELAY seconds (default 1; the tests set 0).
--
-- This file holds the commands and main; its helpers are in flume/cli/:
-- output.lua (errors, stdout, formats), args.lua (options, JSON input),
-- progress.lua (the bar, waiting for views, Ctrl-C), db.lua (opening
-- databases, attaching views), diff.lua (verify's comparison).
local flume = require "flume"
-- The command reports warnings in its own output (see `status`).
flume.warn = function() end

local json = require "flume.json"
local Args = require "flume.cli.args"
local Db = require "flume.cli.db"
local Diff = require "flume.cli.diff"
local Output = require "flume.cli.output"
local Progress = require "flume.cli.progress"

-- What views print goes to stderr (flume.on_log's line), as it comes:
-- whoever prints in a view is debugging it. A progress bar on the line is
-- cleared first; its next tick draws it again below.
local print_log = flume.on_log
flume.on_log = function(view, seq, msg)
  Progress.clear_line()
  print_log(view, seq, msg)
end

local core = flume.core
local clock = core.hrtime
local json_to_mp = core.json_to_mp
local stderr, stdout = io.stderr, io.stdout
local fmt, concat, sort = string.format, table.concat, table.sort
local maxinteger = math.maxinteger

local array = json.array
local to_json = json.encode
local Exit, fail, fail_error, usage, one_line = Output.Exit, Output.fail,
  Output.fail_error, Output.usage, Output.one_line
local out, human_size, print_table = Output.out, Output.human_size,
  Output.print_table
local parse_args, parse_json = Args.parse_args, Args.parse_json
local progress, with_progress, catch_up, check_interrupt =
  Progress.progress, Progress.with_progress, Progress.catch_up,
  Progress.check_interrupt
local CODECS, exists, need_db, open_ro, close_db, open_db = Db.CODECS,
  Db.exists, Db.need_db, Db.open_ro, Db.close_db, Db.open_db
local decoder, view_specs, use, attach_views = Db.decoder, Db.view_specs,
  Db.use, Db.attach_views
local use_stored = Db.use_stored
local view_records = Db.view_records

local M = {}

-- flume.tools -----------------------------------------------------------------

--- The process helpers, from the library that holds flume.core (which
-- registers them in package.preload).
local function load_tools() return require "flume.tools" end

--- Reads up to `limit` log entries from `from` towards `to` (backwards when
-- from > to) of a handle into seqs and vals, as the bytes stored: the
-- command decodes them itself (marking empty arrays, which JSON tells
-- apart from empty objects). A read-only handle sees the writer's last
-- commit. Returns how many.
local function read_raw(db, from, to, limit, seqs, vals)
  return db._c:read(false, from, to, limit, seqs, vals)
end

-- Commands --------------------------------------------------------------------

local commands, order = {}, {}

--- What a command did: `obj` as one JSON object with --json, else `text`.
local function report(ctx, obj, text)
  if ctx.opts.json then out(to_json(obj), "\n") else out(text) end
end

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
      local db = open_ro(ctx, dir)
      local since, have = db.since, db.codec
      close_db(ctx, db)
      if codec and codec ~= have then
        fail_error("ECODEC", fmt("%s was written with codec '%s', not '%s'",
          dir, have, codec))
      end
      report(ctx, { path = dir, created = false, codec = have,
        values = since + 1 }, fmt("%s: already a flume database (codec " ..
        "%s, %d values)\n", dir, have, since + 1))
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
    report(ctx, { path = dir, created = true, codec = codec or "msgpack",
      values = 0 }, fmt("%s: created (codec %s)\n", dir, codec or "msgpack"))
  end,
})

command("append", {
  summary = "append JSON Lines from stdin; prints the last seq",
  usage = "flume append DIR [--batch N | --atomic]",
  help = [[
Reads one JSON value per line on stdin and appends them to the log as they
come, in batches of N lines (10,000 unless --batch says), then prints the
last seq. Blank lines are skipped. Each batch is all or nothing: every line
of it is parsed before it is appended, and a bad line is reported with its
number, what was appended before its batch (up to which seq), and nothing
of its batch is. Memory stays bounded by a batch, whatever the input's
size. Numbers without a fraction or exponent are int64 integers (beyond
that range: an error), the others floats; a null in an object leaves the
field out. What `flume cat --values` prints comes back exactly, tags
included ({"$float":"inf"}, {"$bytes":"ff"}, {"$map": ...}: see the
README). A raw database takes JSON strings only.

  --batch N   lines per batch (default 10,000)
  --atomic    the whole input is one batch: all of it or nothing (it is
              held in memory until the end)]],
  options = { ["--batch"] = "int", ["--atomic"] = "flag" },
  args = { 1, 1 },
  run = function(ctx)
    local dir, size = ctx.args[1], ctx.opts.batch
    if size ~= nil and size < 1 then usage("--batch must be at least 1") end
    if size ~= nil and ctx.opts.atomic then
      usage("--batch and --atomic exclude each other")
    end
    if not ctx.opts.atomic then size = size or 10000 end
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
    local byte, sub = string.byte, string.sub
    -- One line, its "\n" taken off (lineno and bytes count it already).
    local function take(line)
      if byte(line, -1) == 13 then line = sub(line, 1, -2) end -- CRLF
      -- a UTF-8 byte order mark (as some editors write) before the first
      -- line: skipped, as JSON Lines readers do
      if lineno == 1 and sub(line, 1, 3) == "\239\187\191" then
        line = sub(line, 4)
      end
      -- msgpack straight from JSON in C for the common values
      -- (runtime/json.c); flume.json for the rest, and for every error
      local fast = not raw and json_to_mp(line)
      if fast then
        n = n + 1
        values[n] = fast
        if size and n >= size then flush() end
      elseif line:find("%S") then
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
    end
    local function read_failed(rerr)
      -- (a Ctrl-C interrupts a read that waits: the read fails with EINTR,
      -- and the command ends as interrupted, not with an internal error)
      if ctx.tools.interrupted() then fail("interrupted") end
      fail("cannot read the input: " .. tostring(rerr))
    end
    local next_tick = 1000
    local function tick()
      if lineno < next_tick then return end
      next_tick = lineno - lineno % 1000 + 1000
      check_interrupt(ctx)
      if total then p:update(bytes, total, appended + n)
      else p:update(appended + n, nil) end
    end
    if total == nil or raw then
      -- A pipe or a terminal: line by line, so that each line is taken as
      -- it comes (a read of a chunk would wait for the whole chunk).
      while true do
        local line, rerr = input:read("l")
        if line == nil then
          if rerr == nil then break end
          read_failed(rerr)
        end
        lineno = lineno + 1
        bytes = bytes + #line + 1
        take(line)
        tick()
      end
    else
      -- A file: read in chunks whose common lines C converts at once
      -- (core.json_lines); a line it leaves comes to take().
      local CHUNK, json_lines, find = 1 << 20, core.json_lines, string.find
      local buf, pos, eof = "", 1, false
      -- More input after what is left of buf: until a "\n" comes (a line
      -- longer than a chunk is joined once) or the input ends.
      local function fill()
        local parts = { sub(buf, pos) }
        while true do
          local piece, rerr = input:read(CHUNK)
          if piece == nil then
            if rerr ~= nil then read_failed(rerr) end
            eof = true
            break
          end
          parts[#parts + 1] = piece
          if find(piece, "\n", 1, true) then break end
        end
        buf, pos = concat(parts), 1
      end
      local max = size or maxinteger
      while true do
        -- (a line 1 after a byte order mark is not JSON: it goes to take(),
        -- which skips the mark)
        local np, nn, lines = json_lines(buf, pos, values, n, max)
        bytes, lineno, n, pos = bytes + np - pos, lineno + lines, nn, np
        if size and n >= size then
          flush()
        else
          local nl = find(buf, "\n", pos, true)
          if nl then
            lineno, bytes = lineno + 1, bytes + nl - pos + 1
            local line = sub(buf, pos, nl - 1)
            pos = nl + 1
            take(line)
          elseif not eof then
            fill()
          elseif pos <= #buf then
            -- the last line, without its "\n"
            lineno, bytes = lineno + 1, bytes + #buf - pos + 1
            local line = sub(buf, pos)
            pos = #buf + 1
            take(line)
          else
            break
          end
        end
        tick()
      end
    end
    flush()
    if total then p:update(bytes, total, appended)
    else p:update(appended, nil) end
    p:finish()
    report(ctx, { last = last or db.since, appended = appended },
      fmt("%d\n", last or db.since))
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
    local db = open_ro(ctx, dir)
    local since = db.since
    if seq < 0 then seq = since + 1 + seq end
    local seqs, vals = {}, {}
    if seq < 0 or read_raw(db, seq, seq, 1, seqs, vals) == 0 then
      fail_error("ENOTFOUND", fmt("no value at seq %s in %s (%s)",
        ctx.args[2], dir, since < 0 and "the log is empty" or
        fmt("it holds seqs 0 to %d", since)))
    end
    out(to_json(decoder(db.codec)(vals[1])), "\n")
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
    local db = open_ro(ctx, ctx.args[1])
    local decode = decoder(db.codec)
    local mp = db.codec == "msgpack"
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
    local since = db.since
    local p = progress(ctx, "reading")
    local total = math.max(0, math.min(hi, since) - math.max(lo, 0) + 1)
    if remaining < total then total = remaining end
    local count = 0
    if o.live then tools.trap_sigint() end
    local seqs, vals = {}, {}
    while remaining > 0 and lo <= hi do
      if reverse and nxt < lo or not reverse and nxt > hi then break end
      -- (a read of a read-only handle looks for the writer's commits
      -- first: a live cat follows them)
      local n, last = 0, nil
      if mp then
        -- msgpack to JSON in C, a chunk at a time, up to a value that
        -- flume.json must write (runtime/json.c)
        local lines, stuck
        lines, n, stuck, last = db._c:cat_json(nxt, reverse and lo or hi,
          math.min(remaining, 2048), o.values)
        out(lines)
        if stuck then
          remaining, count = remaining - n, count + n
          n, nxt = 0, stuck
        end
      end
      if n == 0 then
        n = read_raw(db, nxt, reverse and lo or hi,
          mp and 1 or math.min(remaining, 256), seqs, vals)
        for i = 1, n do
          local j = to_json(decode(vals[i]))
          if o.values then
            out(j, "\n")
          else
            out('{"seq":', seqs[i], ',"value":', j, "}\n")
          end
        end
        last = seqs[n]
      end
      if n > 0 then
        remaining, count = remaining - n, count + n
        nxt = reverse and last - 1 or last + 1
        if o.live then
          -- Ctrl-C is how a live cat ends, busy or idle: 130 as for any
          -- command (--help says so), without a message (the lines
          -- printed are whole)
          stdout:flush()
          if tools.interrupted() then fail("", 130) end
        else
          p:update(count, total)
          check_interrupt(ctx)
        end
      elseif not o.live then
        break
      else
        stdout:flush()
        tools.sleep(0.05)
        if tools.interrupted() then fail("", 130) end
      end
    end
    if not o.live then p:finish() end
  end,
})

--- `status --watch`: the log's since and each view's since, lag and rate,
-- refreshed every interval on one read-only handle, until Ctrl-C.
local function watch_status(ctx, dir)
  local interval = tonumber(ctx.opts.interval or "1")
  if not interval or interval < 0.05 then
    usage("--interval takes seconds, at least 0.05")
  end
  local tools = ctx.tools
  local db = open_ro(ctx, dir, true)
  local tty = tools.isatty(1)
  local prev, prev_at = {}, clock()
  while true do
    local now = clock()
    local since = db._c:since()
    local rows = { { "name", "kind", "since", "lag", "rate/s", "writer" } }
    for _, v in ipairs(db:views()) do
      local rate = prev[v.name] and (v.since - prev[v.name]) /
        math.max(now - prev_at, 1e-3) or 0
      prev[v.name] = v.since
      rows[#rows + 1] = { v.name, v.kind, tostring(v.since),
        tostring(since - v.since), fmt("%.0f", rate),
        v.error and "failed" or v.attached and "running" or "-" }
    end
    prev_at = now
    if tty then out("\27[H\27[2J") end -- in place: home, clear
    out(fmt("%s  since %d  %s\n", dir, since, os.date("%H:%M:%S")))
    if #rows > 1 then print_table(rows, "  ") else out("  no views\n") end
    stdout:flush()
    local slept = 0
    while slept < interval do
      tools.sleep(math.min(0.05, interval - slept))
      slept = slept + 0.05
      if tools.interrupted() then fail("interrupted") end
    end
  end
end

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
  -- the catalogue: where its script came from, and a writer running it
  r.chunkname = rec and rec.chunkname or nil
  r.writer = rec and rec.attached or false
  r.error = err or (info and info.error and one_line(info.error)) or
    (rec and rec.error and one_line(rec.error)) or nil
  return r
end

command("status", {
  summary = "the log and every view: since, sizes, lag, warnings, errors",
  usage = "flume status DIR [--view NAME=SCRIPT]... [--json] [--no-wait] " ..
    "[--check [--max-lag N]] [--watch [--interval S]]",
  help = [[
Shows the log (since, entries, size on disk, codec, format version) and
every view the database has (kind, version, since, lag behind the log,
size of its state, script hash, whether a running writer keeps it up, and
the error that stopped it there). Views are stored with their scripts
(`flume view DIR NAME --script` prints one). Without --view, status only
reads, and works while another process writes the database. Give a view's
script with --view to attach it, which also checks it (a script changed
without a version bump is a warning), lets it catch up with the log and
shows its last error.

  --view NAME=SCRIPT   attach this view script (repeatable); --view
                       SCRIPT.lua names the view after the file
  --no-wait            do not wait for attached views to catch up
  --check              for monitoring: exit 1 (after the report) when a
                       view has failed, or lags more than --max-lag N
                       values behind the log (default: any lag is fine)
  --watch              refresh the log's since and each view's since, lag
                       and rate every second (--interval S), in place on a
                       terminal, until Ctrl-C; beside a writer too]],
  options = { ["--view"] = "list", ["--json"] = "flag",
    ["--no-wait"] = "flag", ["--check"] = "flag", ["--max-lag"] = "int",
    ["--watch"] = "flag", ["--interval"] = "string" },
  args = { 1, 1 },
  run = function(ctx)
    local dir = ctx.args[1]
    if ctx.opts.watch then return watch_status(ctx, dir) end
    local specs, names = view_specs(ctx)
    local db = open_ro(ctx, dir, #names == 0)
    local before = view_records(db)
    close_db(ctx, db)
    local infos, errors = {}, {}
    if #names > 0 then
      local w = open_db(ctx, dir)
      local views = {}
      for _, name in ipairs(names) do
        views[name] = use(ctx, w, name, specs[name])
      end
      if not ctx.opts["no-wait"] then
        errors = catch_up(ctx, "catching up", views)
      end
      for name, v in pairs(views) do infos[name] = v:status() end
      close_db(ctx, w)
    end
    db = open_ro(ctx, dir, true)
    -- The records first: the log they are compared with is then as new
    -- or newer (a view's since is never past it). The log's since and
    -- size come from one snapshot, its seqs dense from 0.
    local records = view_records(db)
    local tables, info = db:tables(), db:storage()
    local entries = tables.log.entries
    local since = entries - 1
    local codec = db.codec
    close_db(ctx, db)
    local st = ctx.tools.stat(dir .. "/data.mdb")
    local report = {
      path = dir, codec = codec, since = since,
      -- the stored format version is the text "2": a number in JSON
      format = math.tointeger(tonumber(ctx.tools.format)) or ctx.tools.format,
      entries = entries, size = st and st.size or 0, used = info.used,
      log_size = tables.log.bytes, views = array {},
    }
    local all = {}
    for name in pairs(records) do all[#all + 1] = name end
    for _, name in ipairs(names) do
      if not records[name] then all[#all + 1] = name end
    end
    sort(all)
    for _, name in ipairs(all) do
      report.views[#report.views + 1] = view_report(name,
        before[name] or records[name], infos[name], errors[name], since,
        tables)
    end
    -- --check: what is wrong, for a monitor's exit code
    local max_lag = ctx.opts["max-lag"]
    if max_lag ~= nil and not ctx.opts.check then
      usage("--max-lag goes with --check")
    end
    if max_lag ~= nil and max_lag < 0 then
      usage("--max-lag must be at least 0")
    end
    local problems = {}
    for _, v in ipairs(report.views) do
      if v.error then
        -- the stored error names its view already ("view 'x' failed at
        -- seq N: ..."): said once
        local named = "view '" .. v.name .. "' "
        problems[#problems + 1] = v.error:sub(1, #named) == named and
          v.error or fmt("view '%s' failed: %s", v.name, v.error)
      elseif max_lag and v.lag > max_lag then
        problems[#problems + 1] = fmt("view '%s' lags %d values behind " ..
          "the log (more than %d)", v.name, v.lag, max_lag)
      end
    end
    if ctx.opts.check then report.problems = array(problems) end
    local function checked()
      if ctx.opts.check and #problems > 0 then
        fail("check: " .. concat(problems, "; "))
      end
    end
    if ctx.opts.json then
      out(to_json(report), "\n")
      return checked()
    end
    out(fmt("database  %s\n", dir))
    out(fmt("log       since %d (%d entries), %s on disk (%s in use), " ..
      "codec %s, format %s\n", since, entries, human_size(report.size),
      human_size(report.used), report.codec, report.format))
    if #report.views == 0 then
      out("views     none\n")
      return checked()
    end
    out(fmt("views     %d\n", #report.views))
    local rows = { { "name", "kind", "version", "since", "lag", "state",
      "script hash", "writer" } }
    local unattached = 0
    for _, v in ipairs(report.views) do
      rows[#rows + 1] = { v.name, v.kind, tostring(v.version),
        tostring(v.since), tostring(v.lag), human_size(v.state_size),
        v.hash, v.writer and "running" or "-" }
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
    checked()
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

--- Opens DIR for writing; beside a running writer, fails saying which
-- command (`what`) needs it to itself and what to do instead (`hint`).
local function open_writer(ctx, dir, what, hint)
  local ok, db = pcall(open_db, ctx, dir)
  if ok then return db end
  if type(db) == "string" and db:find("ELOCKED", 1, true) then
    fail_error("ELOCKED", fmt("%s: %s is open for writing by another " ..
      "process, %s", what, dir, hint))
  end
  error(db, 0)
end

command("view", {
  summary = "read a view as the database stores it, or call its methods",
  usage = "flume view DIR NAME [METHOD [ARG...]] [--view NAME=SCRIPT] " ..
    "[--script]",
  help = [[
Mounts the view NAME as the database stores it (its script is kept with
it), and calls METHOD with the ARGs, printing the result as JSON (a source
method's values, and read's entries, as JSON Lines). Each ARG is read as
JSON if it parses, else taken as a string: `get post` and `get '"post"'`
are the same; `get 42` passes a number. Reads wait until the view has
caught up with the log. While another process writes the database with
the view attached, the view is read beside it (read-only, up to that
writer's checkpoints); otherwise the command opens the database for
writing and lets the view catch up itself.

Methods: get [KEY] (a reduce view's state, or KEY's accumulator or indexed
values), read [OPTIONS] (group and index views; OPTIONS a JSON object such
as '{"gte": "a", "limit": 10, "reverse": true}'), status, and the script's
own methods. Without METHOD: the view's whole content.

  --script             print the view's stored script and exit
  --view NAME=SCRIPT   attach this script instead of the stored one (a
                       new version rebuilds the view); `flume view DIR
                       NAME SCRIPT.lua [METHOD ...]` is the same]],
  options = { ["--view"] = "list", ["--script"] = "flag" },
  args = { 2, maxinteger },
  run = function(ctx)
    local dir, name = ctx.args[1], ctx.args[2]
    local specs = view_specs(ctx)
    local script, first = specs[name], 3
    local a3 = ctx.args[3]
    if a3 and (a3:match("%.lua$") or a3:find("/", 1, true)) then
      script, first = a3, 4
    end
    local method = ctx.args[first]
    local ro = open_ro(ctx, dir)
    local rec = view_records(ro)[name]
    if ctx.opts.script then
      if not rec then fail(fmt("no view named '%s' in %s", name, dir)) end
      if not rec.script then
        fail(fmt("view '%s' has no stored script (attached by an older " ..
          "flume, or written in C)", name))
      end
      out(rec.script)
      if rec.script:sub(-1) ~= "\n" then out("\n") end
      return
    end
    local v
    if not script and rec and rec.attached then
      -- a running writer keeps it up: read beside it
      v = use_stored(ctx, ro, name)
    else
      close_db(ctx, ro)
      if not script and not rec then
        fail(fmt("no view named '%s' in %s (attach one with --view " ..
          "%s=SCRIPT)", name, dir, name))
      end
      if not script and not rec.script then
        usage(fmt("view '%s' has no stored script: pass --view %s=SCRIPT",
          name, name))
      end
      local db = open_writer(ctx, dir, "view '" .. name .. "'",
        "which must have the view attached for it to be read beside it " ..
        "(or read a backup: flume backup)")
      v = script and use(ctx, db, name, script) or use_stored(ctx, db, name)
      local err = catch_up(ctx, "catching up", { [name] = v })[name]
      if err then fail(err) end
    end
    local args = {}
    for i = first + 1, #ctx.args do
      local a = ctx.args[i]
      -- JSON, or else the word itself as a string
      local ok, value = pcall(parse_json, a)
      if not ok then
        if a:find("^%s*[%[{\"]") then
          fail(fmt("argument %d: %s", i - first, value))
        end
        value = a
      end
      args[i - first] = value
    end
    local nargs = #ctx.args - first
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
      local res = v:get(table.unpack(args, 1, nargs))
      if v._kind == "index" then array(res) end
      out(to_json(res), "\n")
    elseif v._methods and v._methods[method] then
      local res = v[method](v, table.unpack(args, 1, nargs))
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

command("drop", {
  summary = "remove a view: its record, stored script and state",
  usage = "flume drop DIR NAME",
  help = [[
Removes the view NAME from the database: its checkpoint record, its stored
script and its state go in one transaction. Opens the database for
writing: stop the process writing it first.]],
  options = {},
  args = { 2, 2 },
  run = function(ctx)
    local dir, name = ctx.args[1], ctx.args[2]
    local db = open_writer(ctx, dir, "drop", "and dropping a view " ..
      "needs the write lock: stop that writer first (or drop it from the " ..
      "writer's code: db:drop(name))")
    local ok, err = pcall(db.drop, db, name)
    if not ok then
      if type(err) == "string" and err:find("ENOTFOUND", 1, true) then
        fail(fmt("no view named '%s' in %s", name, dir))
      end
      error(err, 0)
    end
    report(ctx, { path = dir, dropped = name },
      fmt("dropped view '%s' from %s\n", name, dir))
  end,
})
command("rebuild", {
  summary = "destroy views' state and rebuild it from the log",
  usage = "flume rebuild DIR [NAME] [--view NAME=SCRIPT]...",
  help = [[
Destroys the state of every view the database has (or only of NAME) and
rebuilds it from the log with its stored script, with a progress bar.

  --view NAME=SCRIPT   a view and the script to use instead of the stored
                       one (repeatable; then only the views given); a
                       positional NAME=SCRIPT is the same]],
  options = { ["--view"] = "list" },
  args = { 1, maxinteger },
  run = function(ctx)
    local dir = ctx.args[1]
    local db, names, views = attach_views(ctx, dir)
    local list = {}
    for i, name in ipairs(names) do list[i] = views[name] end
    local t0 = clock()
    with_progress(ctx, "rebuilding", list, function() db:rebuild() end, -1)
    local secs = clock() - t0
    report(ctx, { path = dir, rebuilt = array(names), values = db.since + 1,
      seconds = secs + 0.0 }, fmt("rebuilt %s from %d values in %.2f s\n",
      concat(names, ", "), db.since + 1, secs))
  end,
})

--- Reads every entry of every table of dir, checking its checksum, in a
-- child process (a damaged page can crash LMDB; core.verify, which opens
-- the folder read-only there, beside any writer): prints what is damaged
-- and fails if anything is.
local function verify_storage(ctx, dir, result)
  need_db(ctx, dir)
  local r = core.verify(dir)
  local bad = #r.damaged
  if ctx.opts.json then
    if bad > 0 then
      result.storage = { ok = false, damaged = array(r.damaged),
        crashed = r.crashed or false }
      out(to_json(result), "\n")
    end
  else
    for _, d in ipairs(r.damaged) do out("damaged: ", d, "\n") end
  end
  if bad > 0 then
    fail_error("ECORRUPT", fmt("verify: %s has %d damaged %s%s", dir, bad,
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
if there is any. This walk reads only: it works while another process
writes the database. Then recomputes every view the database has (or
only NAME, or those given with --view) from the log with its stored
script, into a scratch database in memory, and compares the result with
its stored state, key by key. Prints where they differ; exits with 1 if
any does. The views are attached for this, so the recomputation needs
the database to itself: beside a writer, only the walk is done (verify a
backup to check the views of a database in use).

  --view NAME=SCRIPT   a view and the script to use instead of the stored
                       one (repeatable; then only the views given); a
                       positional NAME=SCRIPT is the same]],
  options = { ["--view"] = "list" },
  args = { 1, maxinteger },
  run = function(ctx)
    local dir = ctx.args[1]
    -- with --json, one object at the end: what the lines would say
    local result = { path = dir, views = array {} }
    local out = ctx.opts.json and function() end or out
    local function finish()
      if ctx.opts.json then Output.out(to_json(result), "\n") end
    end
    local checked = verify_storage(ctx, dir, result)
    result.storage = { ok = true, entries = checked.entries,
      tables = #checked.tables - 1 }
    out(fmt("storage: ok (%d entries in %d tables)\n", checked.entries,
      #checked.tables - 1))
    local given = #ctx.args > 1 or #(ctx.opts.view or {}) > 0
    if not given then
      local db = open_ro(ctx, dir, true)
      local records = view_records(db)
      close_db(ctx, db)
      if next(records) == nil then return finish() end
    end
    local ok, db, names, stored, specs = pcall(attach_views, ctx, dir)
    if not ok then
      if not given and type(db) == "string" and
          db:find("ELOCKED", 1, true) then
        -- beside a writer: the walk is what can be checked
        out("views not recomputed: another process has the database " ..
          "open for writing (verify a backup of it: flume backup)\n")
        result.views_skipped = "another process has the database open " ..
          "for writing"
        return finish()
      end
      error(db, 0)
    end
    local errors = catch_up(ctx, "catching up", stored)
    local catalogue = view_records(db)
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
      if specs[name] then
        fresh[name] = use(ctx, scratch, name, specs[name])
      else
        local src = catalogue[name].script
        if not src:find("\n") then src = src .. "\n" end -- not a path
        local okv, v = pcall(scratch.use, scratch, name, src)
        if not okv then
          fail(fmt("view '%s' (as stored): %s", name, one_line(v)))
        end
        fresh[name] = v
      end
    end
    local fresh_errors = catch_up(ctx, "recomputing", fresh)
    local bad = 0
    for _, name in ipairs(names) do
      local e1, e2 = errors[name], fresh_errors[name]
      if e1 or e2 then
        bad = bad + 1
        result.views[#result.views + 1] = { name = name, ok = false,
          error = e1 or e2 }
        out(fmt("%s: failed: %s\n", name, e1 or e2))
      else
        local found, where, seen = Diff.compare(stored[name], fresh[name],
          function() check_interrupt(ctx) end)
        local kind = stored[name]._kind
        if found == 0 then
          local what = kind == "reduce" and "" or fmt(", %d %s%s", seen,
            kind == "index" and "entr" or "key",
            kind == "index" and (seen == 1 and "y" or "ies") or
            (seen == 1 and "" or "s"))
          out(fmt("%s: ok (%s%s, since %d)\n", name, kind, what, db.since))
          result.views[#result.views + 1] = { name = name, ok = true,
            kind = kind, entries = seen, since = db.since }
        else
          bad = bad + 1
          result.views[#result.views + 1] = { name = name, ok = false,
            kind = kind, differences = found, where = array(where) }
          out(fmt("%s: DIFFERS from the log in %d place%s:\n", name, found,
            found == 1 and "" or "s"))
          for _, w in ipairs(where) do out("  ", w, "\n") end
          if found > #where then
            out(fmt("  ... and %d more\n", found - #where))
          end
        end
      end
    end
    finish()
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
    local db = open_ro(ctx, dir, true) -- a copy needs no decoding
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
    local used = db:storage().used
    local p = progress(ctx, "copying", "bytes")
    local ok, err = pcall(db.backup, db, dest, {
      compact = not ctx.opts["no-compact"],
      progress = function(bytes)
        if tools.interrupted() then error("flume: interrupted", 0) end
        p:update(bytes, used)
      end,
    })
    close_db(ctx, db)
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
    local copy = open_ro(ctx, dest, true)
    local since = copy.since
    close_db(ctx, copy)
    report(ctx, { path = dest, source = dir, since = since,
      values = since + 1, bytes = size }, fmt("%s: backup of %s at since " ..
      "%d (%d values), %s\n", dest, dir, since, since + 1, human_size(size)))
  end,
})

command("remote", {
  summary = "a remote log: make its stream, or show where a node is",
  usage = "flume remote status DIR [--urls URLS] [--timeout S]\n" ..
    "       flume remote init --urls URLS --stream NAME [--replicas N] " ..
    "[--codec msgpack|raw]",
  help = [[
status DIR: the stream that the node folder DIR caches (asked of the
servers it was last opened with, or --urls): its last seq, leader and each
replica's state, and this node's position in it and lag. Reads DIR beside
its writer.

init: makes the stream NAME on the servers URLS (comma-separated) with N
copies (default 3), denying deletes and purges, and its genesis message,
unless it is there; a stream that allows deletes, purges or limits is
refused. Never delete a stream and make another of the same name.

  --urls URLS     nats://host:port,... (status: default the stored ones)
  --stream NAME   init: the stream (A-Z a-z 0-9 _ -)
  --replicas N    init: copies of the stream (default 3)
  --codec NAME    init: the values' codec, msgpack (default) or raw
  --timeout S     seconds to wait for the servers (default 10)]],
  options = { ["--urls"] = "string", ["--stream"] = "string",
    ["--replicas"] = "int", ["--codec"] = "string", ["--timeout"] = "int",
    ["--json"] = "flag" },
  args = { 1, 2 },
  run = function(ctx)
    local core = require "flume.core"
    if not core.remote then
      fail_error("ENOTSUP", "this flume was built without libnats")
    end
    local sub, o = ctx.args[1], ctx.opts
    local timeout = (o.timeout or 10) * 1000
    if sub == "init" then
      if not o.urls or not o.stream then
        usage("remote init needs --urls and --stream")
      end
      if o.codec ~= nil and not CODECS[o.codec] then
        usage("--codec must be msgpack or raw, not " .. o.codec)
      end
      local st = core.remote_stat(o.urls, o.stream, timeout, true,
        o.replicas, o.codec or "msgpack")
      report(ctx, { stream = o.stream, replicas = st.replicas,
        messages = st.messages, leader = st.leader },
        fmt("stream %s: %d replicas, %d messages, leader %s\n", o.stream,
          st.replicas, st.messages, st.leader ~= "" and st.leader or "-"))
      return
    end
    if sub ~= "status" or not ctx.args[2] then
      usage("remote status DIR | remote init --urls URLS --stream NAME")
    end
    local dir = ctx.args[2]
    local db = open_ro(ctx, dir)
    local m, since = db._c:remote_meta(), db.since
    close_db(ctx, db)
    if not m then fail(fmt("%s holds a local log, not a remote one", dir)) end
    local urls = o.urls or m.urls
    if urls == "" then usage("--urls: no URLs are stored in " .. dir) end
    local st = core.remote_stat(urls, m.stream, timeout)
    local lag = math.max(0, st.last_seq - m.stored)
    report(ctx, { path = dir, stream = m.stream, node = m.node,
      since = since, stored = m.stored, last = st.last_seq, lag = lag,
      messages = st.messages, replicas = st.replicas, leader = st.leader,
      peers = array(st.peers) },
      (function()
        local lines = {
          fmt("%s: node %s of stream %s (%d replicas, leader %s)", dir,
            m.node, m.stream, st.replicas,
            st.leader ~= "" and st.leader or "-"),
          fmt("  stream: last seq %d, %d messages", st.last_seq,
            st.messages),
          fmt("  this node: stored up to stream seq %d (log since %d), " ..
            "%d behind", m.stored, since, lag),
        }
        for _, p in ipairs(st.peers) do
          lines[#lines + 1] = fmt("  replica %s: %s, %d behind, seen %d ms " ..
            "ago", p.name, p.offline and "offline" or p.current and
            "current" or "catching up", p.lag, p.active_ms)
        end
        return table.concat(lines, "\n") .. "\n"
      end)())
  end,
})

command("shell", {
  summary = "a Lua prompt with the database open and its views mounted",
  usage = "flume shell DIR [--readonly]",
  help = [[
A Lua 5.4 prompt with `db` open on DIR (for writing, or read-only beside a
running writer with --readonly) and every view the database stores mounted
(db.NAME), like `sqlite3 DIR`. Each line is run as Lua: an expression's
values are printed as JSON (`db:get(0)`, `db.types:get("post")`), a
statement is run (`db:append({ type = "post" })`). `flume` is the module.
Ends at end of input (Ctrl-D) or with `.quit` (exit code 0); an error is
printed and the prompt goes on. On a terminal, Ctrl-C cancels the line
being typed and the prompt goes on; with input that is not a terminal (a
script), Ctrl-C ends it with 130 as any command.

  --readonly   open read-only (beside a running writer)]],
  options = { ["--readonly"] = "flag" },
  args = { 1, 1 },
  run = function(ctx)
    local dir = ctx.args[1]
    local db
    if ctx.opts.readonly then
      db = open_ro(ctx, dir)
    else
      db = open_writer(ctx, dir, "shell", "which has the write lock: " ..
        "try flume shell --readonly " .. dir .. " to read beside it")
    end
    local mounted = {}
    for _, v in ipairs(db:views()) do
      if v.script and pcall(db.view, db, v.name) then
        mounted[#mounted + 1] = v.name
      end
    end
    local tty = ctx.tools.isatty(0)
    local env = setmetatable({ db = db, flume = flume }, { __index = _G })
    if tty then
      out(fmt("flume shell on %s (%s, %d values); views: %s\n", dir,
        ctx.opts.readonly and "read-only" or "writing", db.since + 1,
        #mounted > 0 and concat(mounted, ", ") or "none"))
      out("an expression prints its value as JSON; .quit or Ctrl-D ends\n")
    end
    local function show(...)
      for i = 1, select("#", ...) do
        local v = select(i, ...)
        local ok, j = pcall(to_json, v)
        out(ok and j or tostring(v), "\n")
      end
    end
    -- Ctrl-C: on a terminal it cancels the line (SIGINT cuts the read
    -- short) and is trapped again for the next one; else it ends the shell
    local function interrupted()
      if not ctx.tools.interrupted() then return false end
      if not tty then fail("interrupted") end
      ctx.tools.trap_sigint()
      return true
    end
    while true do
      if tty then out("flume> ") stdout:flush() end
      local line = io.stdin:read("l")
      if interrupted() then
        out("\n")
      elseif line == nil or line == ".quit" then
        break
      elseif line:find("%S") then
        local chunk, err = load("return " .. line, "=shell", "t", env)
        if not chunk then chunk, err = load(line, "=shell", "t", env) end
        if not chunk then
          stderr:write("error: ", tostring(err), "\n")
        else
          local res = table.pack(pcall(chunk))
          if res[1] then
            show(table.unpack(res, 2, res.n))
          else
            stderr:write("error: ", one_line(res[2]), "\n")
          end
        end
        stdout:flush()
        interrupted() -- one that came while the line ran
      end
    end
    if tty then out("\n") end
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
  lines[#lines + 1] = "Exit codes: 0 success, 1 error, 2 bad usage, 130 " ..
    "Ctrl-C."
  return concat(lines, "\n") .. "\n"
end

--- What --json changes for each command (every command takes it): the
-- commands that print values print JSON already.
local JSON_SAYS = {
  get = "changes nothing: the value is printed as JSON anyway",
  cat = "changes nothing: the lines are JSON anyway",
  view = "changes nothing: what it prints is JSON anyway",
  shell = "changes nothing: expressions print as JSON anyway",
}

local function command_help(def)
  return fmt("usage: %s\n\n%s\n\n  --json         %s\n" ..
    "  --quiet, -q    no progress bar\n  --help, -h     this help\n" ..
    "An error is one line `flume: ...` on stderr, with --json too.\n",
    def.usage, def.help, JSON_SAYS[def.name] or
    "what it did as one JSON object on stdout, not text")
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
-- exit code: 0 success, 1 error, 2 usage, 130 interrupted (Ctrl-C).
function M.main(args)
  local ctx = { dbs = {}, quiet = false }
  local ok, err = pcall(function()
    ctx.tools = load_tools()
    return run(ctx, args)
  end)
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
  -- Ctrl-C: the shell's code for a command ended by SIGINT
  if msg == "interrupted" then code = 130 end
  if msg ~= "" then
    if code == 2 and ctx.command then
      msg = msg .. " (see flume " .. ctx.command.name .. " --help)"
    end
    stderr:write("flume: ", msg, "\n")
  end
  return code
end

return M
