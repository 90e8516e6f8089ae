-- The reference model of flume: what a database must hold, computed from
-- the list of values appended, by the plainest means. It is the oracle of
-- the differential and crash specs, not a second engine: it keeps no state
-- but the values, and computes every view from scratch on every question,
-- in Lua tables, sorting keys with a comparator written from the README's
-- ordering rules (not from runtime/keys.c).
--
-- A view's own functions (map, reduce) are the user's code: the model runs
-- the same script source, in a sandbox like the runtime's, and decides by
-- itself what the runtime must do with their results.
local M = {}

-- Values ----------------------------------------------------------------------

--- A deep copy of a value made of tables, strings, numbers and booleans.
local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end
M.copy = copy

--- Whether a and b are the same data: tables by content, numbers by value
-- AND subtype (3 and 3.0 differ: the runtime keeps them apart), -0.0 and
-- 0.0 alike.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false end
    return a == b or (a ~= a and b ~= b)
  end
  if type(a) ~= "table" then return a == b end
  for k, x in pairs(a) do
    if not same(x, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
M.same = same

--- A readable one-line form of a value, for failure messages and
-- reproducers (valid Lua for the shapes the specs use).
local function show(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if t == "number" then
    if math.type(v) == "integer" then
      if v == math.mininteger then return "math.mininteger" end
      return tostring(v)
    end
    if v ~= v then return "0/0" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    if v == 0 and 1 / v < 0 then return "-0.0" end
    local s = string.format("%.17g", v)
    if not s:find("[%.eEn]") then s = s .. ".0" end
    return s
  end
  if t ~= "table" then return tostring(v) end
  if depth > 8 then return "{...}" end
  local parts, n = {}, #v
  for i = 1, n do parts[#parts + 1] = show(v[i], depth + 1) end
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  for _, k in ipairs(keys) do
    local ks = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or
      "[" .. show(k) .. "]"
    parts[#parts + 1] = ks .. " = " .. show(v[k], depth + 1)
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end
M.show = show

-- Keys ------------------------------------------------------------------------

-- README: keys are booleans, numbers, strings or lists of them, ordered
-- false < true < numbers < strings < lists; numbers by value (integers and
-- floats together; 3.0 and 3 are two keys, the float first), strings
-- bytewise, lists element by element, a shorter prefix first. NaN is no
-- key; -0.0 is the key 0.0.

local MAX_DEPTH = 16

--- nil if k is a valid key, else why not.
local function key_problem(k, depth)
  depth = depth or 0
  local t = type(k)
  if t == "boolean" or t == "string" then return nil end
  if t == "number" then
    if k ~= k then return "NaN" end
    return nil
  end
  if t ~= "table" then return "a " .. t end
  if depth >= MAX_DEPTH then return "nested too deep" end
  local count, max = 0, 0
  for i in pairs(k) do
    if math.type(i) ~= "integer" or i < 1 then return "a map" end
    count = count + 1
    if i > max then max = i end
  end
  if count ~= max then return "a list with holes" end
  for i = 1, max do
    local p = key_problem(k[i], depth + 1)
    if p then return p end
  end
  return nil
end
M.key_problem = key_problem

--- The key as the runtime gives it back: -0.0 becomes 0.0.
local function norm_key(k)
  if type(k) == "number" and k == 0 and math.type(k) == "float" then
    return 0.0
  end
  if type(k) == "table" then
    local t = {}
    for i = 1, #k do t[i] = norm_key(k[i]) end
    return t
  end
  return k
end
M.norm_key = norm_key

local RANK = { boolean = 1, number = 2, string = 3, table = 4 }

local function cmp_bytes(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y and -1 or 1 end
  end
  if #a == #b then return 0 end
  return #a < #b and -1 or 1
end

--- -1, 0 or 1 as key a sorts before, with, or after key b.
local function key_cmp(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return RANK[ta] < RANK[tb] and -1 or 1 end
  if ta == "boolean" then
    if a == b then return 0 end
    return a == false and -1 or 1
  end
  if ta == "number" then
    if a < b then return -1 end
    if a > b then return 1 end
    local fa, fb = math.type(a) == "float", math.type(b) == "float"
    if fa == fb then return 0 end
    return fa and -1 or 1 -- equal values: the float first
  end
  if ta == "string" then return cmp_bytes(a, b) end
  for i = 1, math.min(#a, #b) do
    local c = key_cmp(a[i], b[i])
    if c ~= 0 then return c end
  end
  if #a == #b then return 0 end
  return #a < #b and -1 or 1
end
M.key_cmp = key_cmp

--- A string naming the key exactly (type and subtype included): equal keys
-- give equal strings. Used as a table index to group by key.
local function key_id(k)
  local t = type(k)
  if t == "boolean" then return k and "T" or "F" end
  if t == "number" then
    k = norm_key(k)
    if math.type(k) == "integer" then return "i" .. k end
    return "f" .. string.format("%a", k)
  end
  if t == "string" then return "s" .. #k .. ":" .. k end
  local parts = {}
  for i = 1, #k do parts[i] = key_id(k[i]) end
  return "[" .. table.concat(parts, ",") .. "]"
end
M.key_id = key_id

-- Scripts ---------------------------------------------------------------------

--- The globals of the runtime's view sandbox (README: string, table, math
-- without random, utf8 and the basic functions).
local function sandbox()
  local m = {}
  for k, f in pairs(math) do m[k] = f end
  m.random, m.randomseed = nil, nil
  local env = { string = string, table = table, math = m, utf8 = utf8,
    assert = assert, error = error, ipairs = ipairs, next = next,
    pairs = pairs, pcall = pcall, select = select, tonumber = tonumber,
    tostring = tostring, type = type, rawequal = rawequal, rawget = rawget,
    rawlen = rawlen, rawset = rawset, setmetatable = setmetatable,
    getmetatable = getmetatable, xpcall = xpcall }
  env._G = env
  return env
end

--- Loads a view script's source; returns its table.
function M.load_script(src)
  local fn = assert(load(src, "=model", "t", sandbox()))
  local def = fn()
  assert(type(def) == "table" and math.type(def.version) == "integer",
    "not a view script")
  return def
end

--- The kind of a view definition, by the README's rules.
function M.kind(def)
  if def.kind then return def.kind end
  if def.reduce and (not def.map or def.initial ~= nil) then
    return "reduce"
  end
  if def.map and def.reduce then return "group" end
  return "index"
end

--- Loads a mapper's source (a chunk returning function(value, seq)).
function M.load_mapper(src)
  return assert(load(src, "=mapper", "t", sandbox()))()
end

-- The model -------------------------------------------------------------------

local Model = {}
Model.__index = Model

--- A model of an empty log. opts.mapper: the mapper's source, if any;
-- opts.view_value: what views receive for a value (README: a custom
-- codec's views get each value's bytes; default: the value itself).
function M.new(opts)
  opts = opts or {}
  return setmetatable({ values = {}, mapper_src = opts.mapper,
    mapper = opts.mapper and M.load_mapper(opts.mapper),
    view_value = opts.view_value }, Model)
end

--- The log's since: the last seq, -1 when empty.
function Model:since() return #self.values - 1 end

function Model:append(v) self.values[#self.values + 1] = copy(v) end

--- The value at seq as a reader sees it (the mapper applied), or nil.
function Model:get(seq)
  local v = self.values[seq + 1]
  if v == nil then return nil end
  v = copy(v)
  if self.mapper then v = self.mapper(v, seq) end
  return v
end

--- The { seq, value } a stream with these options yields, in order.
function Model:stream(opts)
  opts = opts or {}
  local lo = opts.gte or (opts.gt and opts.gt + 1) or 0
  local hi = opts.lte or (opts.lt and opts.lt - 1) or self:since()
  if lo < 0 then lo = 0 end
  if hi > self:since() then hi = self:since() end
  local out, limit = {}, opts.limit or math.huge
  local from, to, step = lo, hi, 1
  if opts.reverse then from, to, step = hi, lo, -1 end
  for seq = from, to, step do
    if #out >= limit then break end
    out[#out + 1] = { seq, self:get(seq) }
  end
  return out
end

--- Computes a view from scratch over the values at seqs 0..upto (default:
-- the whole log). Returns a table:
--   kind     "reduce" | "group" | "index"
--   failed   the seq at which the view fails (nil if it does not)
--   error    the failure's message
--   state    a reduce view's state
--   entries  a group view's { key, acc } or an index view's { key, seq },
--            in key order (then seq order)
function Model:view(src, upto)
  local def = M.load_script(src)
  local kind = M.kind(def)
  upto = upto or self:since()
  local res = { kind = kind }
  local state, groups, entries = copy(def.initial), {}, {}
  local map, reduce = def.map, def.reduce
  local values, mapper, view_value = self.values, self.mapper,
    self.view_value
  local seq = -1
  -- One pass in one pcall: an error stops the view at the seq it was on.
  -- (View scripts get the stored values themselves, not copies: the
  -- generated scripts never change the values they are given.)
  local ok, err = pcall(function()
    for s = 0, upto do
      seq = s
      local v = values[s + 1]
      if view_value then v = view_value(v) end
      if mapper then v = mapper(copy(v), s) end
      if kind == "reduce" then
        if map then v = map(v, s) end
        if v ~= nil then state = reduce(state, v, s) end
      elseif kind == "group" then
        local k, x = map(v, s)
        if k ~= nil then
          local p = key_problem(k)
          if p then error("map returned a bad key: " .. p) end
          local id = key_id(k)
          local g = groups[id]
          local acc = reduce(g and g.acc, x, k, s)
          if acc == nil then
            groups[id] = nil -- a reduce returning nil deletes the key
          else
            groups[id] = { key = norm_key(k), acc = acc }
          end
        end
      else
        local r = map(v, s)
        if r ~= nil then
          -- a table is a list of keys; a composite key goes inside one
          local keys = type(r) == "table" and r or { r }
          local mine = {}
          for i = 1, #keys do
            local p = key_problem(keys[i])
            if p then error("map returned a bad key: " .. p) end
            local id = key_id(keys[i])
            if not mine[id] then -- one entry per (key, seq)
              mine[id] = true
              entries[#entries + 1] = { norm_key(keys[i]), s }
            end
          end
        end
      end
    end
  end)
  if not ok then
    res.failed, res.error = seq, tostring(err)
    -- the keys of the failing value are not indexed
    while #entries > 0 and entries[#entries][2] == seq do
      entries[#entries] = nil
    end
  end
  if kind == "reduce" then
    res.state = state
  elseif kind == "group" then
    for _, g in pairs(groups) do entries[#entries + 1] = { g.key, g.acc } end
    table.sort(entries, function(a, b) return key_cmp(a[1], b[1]) < 0 end)
    res.entries = entries
  else
    table.sort(entries, function(a, b)
      local c = key_cmp(a[1], b[1])
      if c ~= 0 then return c < 0 end
      return a[2] < b[2]
    end)
    res.entries = entries
  end
  return res
end

--- The entries of a computed view (Model:view) that a read with these
-- options yields, in order: gte (else gt) and lte (else lt) bound keys,
-- then reverse and limit.
function M.read(view, opts)
  opts = opts or {}
  local out = {}
  local function inside(k)
    if opts.gte ~= nil then
      if key_cmp(k, opts.gte) < 0 then return false end
    elseif opts.gt ~= nil then
      if key_cmp(k, opts.gt) <= 0 then return false end
    end
    if opts.lte ~= nil then
      if key_cmp(k, opts.lte) > 0 then return false end
    elseif opts.lt ~= nil then
      if key_cmp(k, opts.lt) >= 0 then return false end
    end
    return true
  end
  local e = view.entries
  local from, to, step = 1, #e, 1
  if opts.reverse then from, to, step = #e, 1, -1 end
  local limit = opts.limit or math.huge
  for i = from, to, step do
    if #out >= limit then break end
    if inside(e[i][1]) then out[#out + 1] = e[i] end
  end
  return out
end

--- A group view's accumulator for key (nil if none); an index view's list
-- of seqs under key, in seq order.
function M.lookup(view, key)
  local id = key_id(key)
  if view.kind == "group" then
    for _, e in ipairs(view.entries) do
      if key_id(e[1]) == id then return e[2] end
    end
    return nil
  end
  local seqs = {}
  for _, e in ipairs(view.entries) do
    if key_id(e[1]) == id then seqs[#seqs + 1] = e[2] end
  end
  return seqs
end

return M
