--- flume's errors as the Lua side raises them: `flume: NAME: message` or
-- `flume: NAME: message: detail`, the format of the errors flume.core
-- raises, with the name and the message the core gives the code
-- (core.errors, from flume.h's FLUME_ERRNO_MAP and the system's codes): a
-- message is written once, in C, for both doors.
local core = require "flume.core"

local error, type, tostring = error, type, tostring
local errors = core.errors

local M = {}

--- The text of the error `name` (a name the core knows, such as "EINVAL"),
-- with `detail` (what was wrong, and where) after the core's message.
function M.message(name, detail)
  local e = errors[name]
  if e == nil then error("flume: no error is named " .. tostring(name), 2) end
  if detail == nil then return "flume: " .. name .. ": " .. e.message end
  return "flume: " .. name .. ": " .. e.message .. ": " .. detail
end

--- Raises the error `name` (see M.message), without a position prefix:
-- flume's errors start with "flume:" wherever they are raised.
function M.raise(name, detail)
  error(M.message(name, detail), 0)
end

--- Whether `err` is a flume error named `name` (raised by flume.core or by
-- M.raise).
function M.is(err, name)
  return type(err) == "string" and
    err:sub(1, #name + 9) == "flume: " .. name .. ": "
end

--- The name of a flume error ("ENOWRITER", "EVIEW", ...), or nil when
-- `err` is not one.
function M.name(err)
  if type(err) ~= "string" then return nil end
  local name = err:match("^flume: ([%u%d_]+): ")
  if name and errors[name] then return name end
  return nil
end

--- The number of a flume error (flume.h's FLUME_E*, a negative errno for
-- a system error), or nil.
function M.code(err)
  local name = M.name(err)
  return name and errors[name].code or nil
end

-- The errors that are misuse (bad arguments, values that cannot be
-- encoded, use after close): raised in both forms of a call.
local misuse = { EINVAL = true, EENCODE = true, ECLOSED = true }

--- Starts the async form of a call: runs `fn(...)`, and if it raises an
-- error that is not misuse (a flume error other than EINVAL, EENCODE and
-- ECLOSED), passes it to `cb(err)` on the next turn of the loop, never
-- from inside the call; misuse and Lua errors are raised.
function M.to_cb(cb, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return end
  local name = M.name(err)
  if name == nil or misuse[name] then error(err, 0) end
  core.timer(0, function() cb(err) end)
end

-- Codes by number; a system code whose name flume's own code has (EINVAL,
-- EIO, ENOSPC, ...) is not in core.errors, which gives the name flume's.
local by_code = {}
for name, e in pairs(errors) do by_code[e.code] = name end

--- The name of a system error number (as io.open gives it), or nil if
-- core.errors does not have it.
function M.errno_name(errno)
  if math.type(errno) ~= "integer" then return nil end
  return by_code[-errno]
end

return M
