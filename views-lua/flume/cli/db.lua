--- How the command opens databases (read-only, beside any writer, or for
-- writing: both with flume.open) and attaches the views of its command
-- line.
local flume = require "flume"
local errors = require "flume.errors"
local output = require "flume.cli.output"

local core = flume.core
local fmt, concat, sort = string.format, table.concat, table.sort
local fail, fail_error, usage, one_line = output.fail, output.fail_error,
  output.usage, output.one_line

local M = {}

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

--- A codec for a name the command cannot decode, for reads that never
-- decode (status, backup): the bytes as they are.
local function opaque(name)
  local same = function(v) return v end
  return { name = name, encode = same, decode = same }
end

--- The folder's read-only handle (flume.open's, which takes no lock: it
-- works beside a writer in another process), with the codec the database
-- was made with; unless any_codec, one the command decodes.
local function open_ro(ctx, dir, any_codec)
  need_db(ctx, dir)
  -- A reader takes the database's codec (msgpack or raw); a custom one
  -- is refused, naming it.
  local ok, db = pcall(flume.open, dir, { readonly = true })
  if not ok and errors.is(db, "ECODEC") then
    local codec = db:match("custom codec '([^']*)'")
    if not any_codec then
      fail_error("ECODEC", fmt("%s uses the codec '%s', which the command " ..
        "line cannot decode (it knows msgpack and raw)", dir,
        tostring(codec)))
    else
      db = flume.open(dir, { readonly = true, codec = opaque(codec) })
    end
  elseif not ok then
    error(db, 0)
  end
  ctx.dbs[#ctx.dbs + 1] = db
  return db
end

--- Closes a handle of ctx.dbs now (one process must not have a folder
-- open twice: a read-only handle is closed before the next open).
local function close_db(ctx, db)
  db:close()
  for i, d in ipairs(ctx.dbs) do
    if d == db then table.remove(ctx.dbs, i) break end
  end
end

--- Opens the database for writing, with the codec it was made with.
local function open_db(ctx, dir)
  local ro = open_ro(ctx, dir)
  local codec = ro.codec
  close_db(ctx, ro)
  local db = flume.open(dir, { codec = codec })
  ctx.dbs[#ctx.dbs + 1] = db
  return db
end

--- The views the database has records of (its catalogue, db:views()), by
-- name: { kind, version, since, hash, ... }.
local function view_records(db)
  local records = {}
  for _, v in ipairs(db:views()) do records[v.name] = v end
  return records
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


--- Mounts a view as the database stores it (its script from the
-- catalogue).
local function use_stored(ctx, db, name)
  local ok, v = pcall(db.view, db, name)
  if not ok then fail(fmt("view '%s' (as stored): %s", name, one_line(v))) end
  return v
end

--- The views a maintenance command works on: those given as NAME=SCRIPT
-- (or --view), else only NAME, else every view the database has; a view
-- not given a script is mounted as stored. Returns the names in order and
-- specs[name] (a script path, or nil: the stored script).
local function pick_views(ctx, dir, records)
  local extra, only = {}, nil
  for i = 2, #ctx.args do
    local a = ctx.args[i]
    if a:find("=") then extra[#extra + 1] = a
    elseif only then usage("one NAME at most")
    else only = a end
  end
  local specs, names = view_specs(ctx, extra)
  local function stored(name)
    local r = records[name]
    if r and not r.script then
      usage(fmt("view '%s' has no stored script (it was attached by an " ..
        "older flume, or is written in C): pass --view %s=SCRIPT", name,
        name))
    end
    return r ~= nil
  end
  if only then
    if specs[only] then return { only }, specs end
    if stored(only) then return { only }, specs end
    fail(fmt("no view named '%s' in %s", only, dir))
  end
  if #names == 0 then
    for n, r in pairs(records) do
      if r.script then names[#names + 1] = n end
    end
    sort(names)
    for n, r in pairs(records) do
      if not r.script then stored(n) end
    end
    if #names == 0 then fail(fmt("%s has no views", dir)) end
  end
  return names, specs
end

--- Opens DIR for writing and attaches the views of the command line (or
-- all the database has, as stored): returns db, their names in order,
-- views[name], and specs[name] (each one's script path, or nil: stored).
local function attach_views(ctx, dir)
  local ro = open_ro(ctx, dir)
  local records = view_records(ro)
  close_db(ctx, ro)
  local names, specs = pick_views(ctx, dir, records)
  local db = open_db(ctx, dir)
  local views = {}
  for _, name in ipairs(names) do
    views[name] = specs[name] and use(ctx, db, name, specs[name]) or
      use_stored(ctx, db, name)
  end
  return db, names, views, specs
end

M.CODECS, M.exists, M.need_db, M.open_ro, M.close_db, M.open_db = CODECS,
  exists, need_db, open_ro, close_db, open_db
M.view_records = view_records
M.decoder, M.view_specs, M.use, M.attach_views = decoder, view_specs, use,
  attach_views
M.use_stored = use_stored

return M
