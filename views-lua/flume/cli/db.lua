--- How the command opens databases (read-only through flume.tools, or for
-- writing with flume.open) and attaches the views of its command line.
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

--- The folder's read-only handle, checked: format, and a codec we decode
-- unless any_codec.
local function open_ro(ctx, dir, any_codec)
  need_db(ctx, dir)
  local env = ctx.tools.open(dir)
  ctx.envs[#ctx.envs + 1] = env
  local ok, meta = pcall(env.meta, env)
  if not ok then
    if errors.is(meta, "ECORRUPT") then
      fail(dir .. ": not a flume database (no flume metadata in its LMDB " ..
        "environment)")
    end
    error(meta, 0)
  end
  if meta.format ~= ctx.tools.format then
    fail_error("EFORMAT", fmt("%s has format version %s; this flume reads %s",
      dir, tostring(meta.format), ctx.tools.format))
  end
  if not any_codec and not CODECS[meta.codec] then
    fail_error("ECODEC", fmt("%s uses the codec '%s', which the command " ..
      "line cannot decode (it knows msgpack and raw)", dir,
      tostring(meta.codec)))
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

M.CODECS, M.exists, M.need_db, M.open_ro, M.close_ro, M.open_db = CODECS,
  exists, need_db, open_ro, close_ro, open_db
M.decoder, M.view_specs, M.use, M.attach_views = decoder, view_specs, use,
  attach_views

return M
