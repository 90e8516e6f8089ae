-- Shared setup for the specs: temporary folders, a database per test on
-- either backend, and running Lua child processes.
local flume = require "flume"

local H = {}

H.backends = { "lmdb", "memory" }
H.lua = os.getenv("FLUME_LUA") or "lua5.4"
local root = os.getenv("FLUME_TEST_TMP") or "/tmp"
assert(os.execute("mkdir -p '" .. root .. "'"))

--- A fresh, empty temporary folder.
function H.tmpdir()
  local name = os.tmpname()
  os.remove(name)
  local dir = root .. "/flume-" .. name:match("[^/]+$")
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir
end

function H.rm(dir)
  if dir then os.execute("rm -rf '" .. dir .. "'") end
end

--- Opens a fresh database on `backend`; returns it and its folder (nil for
-- memory). The caller closes it and removes the folder (see H.fresh).
function H.open(backend, opts)
  if backend == "memory" then return flume.open(nil, opts), nil end
  local dir = H.tmpdir() .. "/db"
  return flume.open(dir, opts), dir
end

--- A context whose `setup` gives it a fresh database in `ctx.db` (folder
-- `ctx.dir`) and whose `teardown` closes and removes it: install them with
-- before_each(ctx.setup) and after_each(ctx.teardown).
function H.fresh(backend, opts)
  local ctx = {}
  function ctx.setup()
    ctx.db, ctx.dir = H.open(backend, opts)
  end
  function ctx.teardown()
    if ctx.db then ctx.db:close() end
    if ctx.dir then H.rm(ctx.dir:match("(.*)/db$")) end
    ctx.db, ctx.dir = nil, nil
  end
  return ctx
end

--- A shell command running a Lua child process that finds the module
-- (FLUME_LUA is the build's lua.sh, which sets the paths).
function H.lua_command(script, ...)
  local args = { script, ... }
  for i, a in ipairs(args) do args[i] = "'" .. tostring(a) .. "'" end
  return H.lua .. " " .. table.concat(args, " ")
end

--- Runs a Lua child process to completion; returns its output and status.
function H.run_lua(script, ...)
  local p = io.popen(H.lua_command(script, ...) .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

--- Writes text into the file at path (replacing it).
function H.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

--- The text of the file at path, or nil if there is none.
function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

--- A string quoted for the shell.
function H.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

H.root = debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers/[^/]+$")
  or "."

--- The shell command running the `flume` command line with `args`.
function H.flume_command(args)
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = H.q(a) end
  return H.lua .. " " .. H.q(H.root .. "/views-lua/bin/flume") .. " " ..
    table.concat(quoted, " ")
end

--- Whether this build is sanitized (ASan/UBSan): slower, so specs scale
-- their budgets down.
function H.sanitized()
  local dir = os.getenv("FLUME_BUILD_DIR")
  local f = dir and io.open(dir .. "/CMakeCache.txt")
  if not f then return false end
  local text = f:read("a")
  f:close()
  return text:find("FLUME_SANITIZE:BOOL=ON", 1, true) ~= nil
end

--- Asserts that fn raises an error whose message matches the Lua pattern.
-- (luassert's error_matches cuts a message at its first "file:line:", and
-- view errors carry the script's position inside them.)
function H.raises(fn, pattern)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error matching " .. pattern)
  err = tostring(err)
  assert(err:find(pattern), "error \"" .. err .. "\" does not match " ..
    pattern)
  return err
end

return H
