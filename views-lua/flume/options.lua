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

--- The options each call takes: anything else is a mistake (a typo such
-- as `snyc` would otherwise be ignored without a word).
local KNOWN = {
  open = { "codec", "sync", "map_size", "mapper", "ready", "readonly",
    "remote", "on_log" },
  remote = { "urls", "stream", "node", "timeout", "replicas" },
  append = { "batch", "encoded" },
  stream = { "gt", "gte", "lt", "lte", "reverse", "limit", "live" },
  backup = { "compact", "progress" },
  get = { "wait", "timeout", "after", "fresh" },
  read = { "gt", "gte", "lt", "lte", "reverse", "limit", "live", "wait",
    "timeout", "after", "fresh" },
}
for name, list in pairs(KNOWN) do
  local set = {}
  for _, k in ipairs(list) do set[k] = true end
  KNOWN[name] = { list = list, set = set }
end

--- How many single edits (insert, delete, change, swap) turn a into b.
local function distance(a, b)
  local prev2, prev, cur = nil, {}, nil
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if prev2 and i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and
          a:byte(i - 1) == b:byte(j) then
        cur[j] = math.min(cur[j], prev2[j - 2] + 1)
      end
    end
    prev2, prev = prev, cur
  end
  return prev[#b]
end

--- Checks an options argument: nil or a table of the options `name`
-- takes (an unknown one is an error naming it, and the option it was
-- probably meant to be).
function M.check_opts(opts, name)
  check_optional(opts, "table", "options", name)
  local known = KNOWN[name]
  if opts == nil or known == nil then return opts end
  for k in pairs(opts) do
    if not known.set[k] then
      local hint, best = "", 3
      if type(k) == "string" then
        for _, c in ipairs(known.list) do
          local d = distance(k, c)
          if d < best then best, hint = d, " (did you mean '" .. c .. "'?)" end
        end
      end
      raise("EINVAL", name .. " has no option " ..
        (type(k) == "string" and "'" .. k .. "'" or tostring(k)) .. hint ..
        "; it takes " .. table.concat(known.list, ", "))
    end
  end
  return opts
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
