--- The checks of arguments and options that databases and views share:
-- each raises `flume: EINVAL: invalid argument: ...` when what it checks
-- is not usable.
local errors = require "flume.errors"

local type, tostring = type, tostring
local raise = errors.raise
local maxinteger = math.maxinteger

local M = {}

--- Checks an optional argument of `name`: nil, or a value of type `want`
-- (its `what`).
local function check_optional(v, want, what, name)
  if v ~= nil and type(v) ~= want then
    raise("EINVAL", name .. "'s " .. what .. " must be a " .. want ..
      ", not a " .. type(v))
  end
  return v
end

--- Checks an options argument: nil or a table.
function M.check_opts(opts, name)
  return check_optional(opts, "table", "options", name)
end

--- Checks a callback argument: nil or a function.
function M.check_cb(cb, name)
  return check_optional(cb, "function", "callback", name)
end

--- An integer option `k` of `opts`, or nil.
function M.opt_int(opts, k)
  local v = opts[k]
  if v ~= nil and math.type(v) ~= "integer" then
    raise("EINVAL", "option '" .. k .. "' must be an integer, not " ..
      tostring(v))
  end
  return v
end

--- The `limit` option: an integer >= 0, or nil or math.huge for none.
function M.opt_limit(opts)
  local v = opts.limit
  if v == nil or v == math.huge then return maxinteger end
  if math.type(v) ~= "integer" or v < 0 then
    raise("EINVAL", "option 'limit' must be an integer >= 0 " ..
      "(math.huge: no limit), not " .. tostring(v))
  end
  return v
end

--- Checks a `timeout` option: a number of seconds, math.huge for none.
-- Returns the seconds, or nil for no timeout.
function M.check_timeout(t)
  if t == nil or t == math.huge then return nil end
  if type(t) ~= "number" or t ~= t or t < 0 then
    raise("EINVAL", "timeout must be a number of seconds >= 0 " ..
      "(math.huge: no timeout), not " .. tostring(t))
  end
  return t
end

return M
