--- The diff engine of `flume verify`: a view's stored state against one
-- recomputed from the log.
local core = require "flume.core"
local json = require "flume.json"

local to_json = json.encode
local fmt, sort = string.format, table.sort

local M = {}

--- A key's text, to order keys of any type.
local function key_string(k)
  if type(k) == "string" then return k end
  return to_json(k)
end


--- The first place (a path below `path`) where a and b differ, and what
-- each holds there; nil if they are equal.
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

--- A value as the report shows it.
local function show(v)
  if v == nil then return "(none)" end
  return to_json(v)
end

--- Compares a view's stored state with one recomputed from the log.
-- Returns the number of differences, a list of where (the first few) and
-- how many keys or entries it looked at. Calls `tick()` every 1000 of
-- them (where the command notices Ctrl-C).
function M.compare(stored, fresh, tick)
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
    if seen % 1000 == 0 then tick() end
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

return M
