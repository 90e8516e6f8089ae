--- flume.json: JSON Lines for the command line, faithful to the log.
--
--   local json = require "flume.json"
--   local v = json.decode('{"n": 9007199254740993, "f": 1.0, "l": []}')
--   json.encode(v)  --> {"f":1.0,"l":[],"n":9007199254740993}
--
-- `decode(line)` gives the value of one line of JSON (it raises `flume:
-- EINVAL: ...` naming the byte for anything that is not exactly one valid
-- JSON value, or that the log cannot hold as written); `encode(value)` gives
-- one line. `encode` then `decode` gives back the same value for every
-- value the log holds (what msgpack decodes to in Lua), exactly:
--
-- * integers are int64 and floats float64, kept apart: a float is always
--   written with a "." or an exponent (1.0, -0.0, 1e+300), an integer never;
--   an integer literal outside the int64 range is an error, not a float;
-- * an empty array is `[]`, an empty map `{}` (a table whose metatable is
--   `json.array_mt`, the same as flume.core's, is an empty array);
-- * a list with holes is written with nulls ([1,null,3]) when the log keeps
--   it as a list (its last element is there and at most half are holes);
--   any other null in a list is an error, as Lua cannot hold it; a null in
--   an object leaves the field out;
-- * what JSON cannot express is carried in a one-key object, a tag:
--   `{"$float":"inf"}` (also "-inf", "nan", "-nan", and "0x" + 16 hex
--   digits for the bits of any other NaN), `{"$bytes":"hex"}` for a string
--   that is not valid UTF-8, and `{"$map":[[key, value], ...]}` for a table
--   whose keys are not all strings (or not all valid UTF-8), such as
--   {[10] = "x"} or {[true] = 1}. A map whose one key is a tag's name is
--   written as a $map too, so a tag is never ambiguous.
--
-- Input must be UTF-8; lone surrogates (\ud800 alone), control characters
-- in strings, duplicate keys, nesting deeper than the log takes (100
-- tables), numbers that overflow a float and anything after the value are
-- errors.
local M = {}

local byte, sub, find, char, fmt = string.byte, string.sub, string.find,
  string.char, string.format
local concat, sort = table.concat, table.sort
local mtype, tointeger = math.type, math.tointeger
local utf8len, utf8char = utf8.len, utf8.char
local spack, sunpack = string.pack, string.unpack

local ok_core, core = pcall(require, "flume.core")
--- The metatable marking an empty table as an empty array.
M.array_mt = ok_core and core.array_mt or { __name = "flume.array" }
local ARRAY = M.array_mt

--- How deep tables may nest (the log's msgpack limit) and JSON with them.
M.max_depth = 100
local MAX_JSON_DEPTH = 4 * M.max_depth

local TAGS = { ["$float"] = true, ["$bytes"] = true, ["$map"] = true }

-- Decoding -------------------------------------------------------------------

local function fail(pos, msg)
  error(fmt("flume: EINVAL: %s at byte %d", msg, pos), 0)
end

local function skip_ws(s, pos)
  local c = byte(s, pos)
  if c ~= 32 and c ~= 9 and c ~= 10 and c ~= 13 then return pos end
  return (find(s, "[^ \t\r\n]", pos)) or #s + 1
end

local ESCAPES = {
  [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f",
  [110] = "\n", [114] = "\r", [116] = "\t",
}

local function hex4(s, pos)
  local h = sub(s, pos, pos + 3)
  if not find(h, "^%x%x%x%x$") then
    fail(pos, "a \\u escape needs 4 hex digits")
  end
  return tonumber(h, 16)
end

--- The string whose opening quote is at pos; returns it and the position
-- after the closing quote.
local function read_string(s, pos)
  local j = find(s, '[%z\1-\31"\\]', pos + 1)
  if j and byte(s, j) == 34 then return sub(s, pos + 1, j - 1), j + 1 end
  local parts, n, i = {}, 0, pos + 1
  while true do
    local j = find(s, '[%z\1-\31"\\]', i)
    if not j then fail(pos, "unterminated string") end
    if j > i then
      n = n + 1
      parts[n] = sub(s, i, j - 1)
    end
    local c = byte(s, j)
    if c == 34 then return concat(parts), j + 1 end
    if c ~= 92 then
      fail(j, "a control character in a string must be escaped")
    end
    local e = byte(s, j + 1)
    local plain = ESCAPES[e]
    n = n + 1
    if plain then
      parts[n] = plain
      i = j + 2
    elseif e == 117 then -- \u
      local cp = hex4(s, j + 2)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        if sub(s, i, i + 1) ~= "\\u" then
          fail(j, "a lone surrogate (\\u" .. fmt("%04x", cp) ..
            ") is not a character")
        end
        local lo = hex4(s, i + 2)
        if lo < 0xDC00 or lo > 0xDFFF then
          fail(j, "a lone surrogate (\\u" .. fmt("%04x", cp) ..
            ") is not a character")
        end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
        i = i + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        fail(j, "a lone surrogate (\\u" .. fmt("%04x", cp) ..
          ") is not a character")
      end
      parts[n] = utf8char(cp)
    else
      fail(j, "unknown escape \\" .. (e and char(e) or ""))
    end
  end
end

local function read_number(s, pos)
  local i, j = find(s, "^-?%d+", pos)
  if not i then fail(pos, "unexpected character '" .. sub(s, pos, pos) .. "'") end
  local d = byte(s, pos) == 45 and pos + 1 or pos -- the first digit
  if j > d and byte(s, d) == 48 then
    fail(pos, "a number cannot start with 0")
  end
  local float = false
  if byte(s, j + 1) == 46 then -- .
    local _, k = find(s, "^%d+", j + 2)
    if not k then fail(j + 1, "a digit must follow '.'") end
    j, float = k, true
  end
  local e = byte(s, j + 1)
  if e == 101 or e == 69 then -- e E
    local _, k = find(s, "^[-+]?%d+", j + 2)
    if not k then fail(j + 1, "digits must follow the exponent") end
    j, float = k, true
  end
  local lit = sub(s, pos, j)
  local v = tonumber(lit)
  if not float then
    if mtype(v) ~= "integer" then
      fail(pos, "integer " .. lit .. " is outside the int64 range " ..
        "(write it with a fraction or an exponent for a float)")
    end
  else -- a float already: Lua reads a fraction or an exponent as one
    if v == math.huge or v == -math.huge then
      fail(pos, "number " .. (#lit > 40 and sub(lit, 1, 40) .. "..." or lit) ..
        " is too large for a float (infinity is {\"$float\":\"inf\"})")
    end
  end
  return v, j + 1
end

local read_value

local NAN_BITS = { nan = 0x7ff8000000000000, ["-nan"] = 0xfff8000000000000 }

local function bits_to_float(b) return (sunpack("<d", spack("<i8", b))) end
local function float_bits(x) return (sunpack("<i8", spack("<d", x))) end

--- Fails unless a table of height h (1 + its deepest table child) fits.
local function check_height(h, pos)
  if h > M.max_depth then
    fail(pos, "tables nested deeper than the log takes (" .. M.max_depth ..
      ")")
  end
  return h
end

--- The value of a tag object { [name] = v } found at pos; `heights` holds
-- the table height of each element of v's pairs (for $map).
local function untag(name, v, pos, heights)
  if name == "$float" then
    if v == "inf" then return math.huge, 0 end
    if v == "-inf" then return -math.huge, 0 end
    if NAN_BITS[v] then return bits_to_float(NAN_BITS[v]), 0 end
    if type(v) == "string" and find(v, "^0x%x+$") and #v == 18 then
      return bits_to_float(tonumber(sub(v, 3), 16)), 0
    end
    fail(pos, "a $float is \"inf\", \"-inf\", \"nan\", \"-nan\" or " ..
      "\"0x\" and 16 hex digits")
  elseif name == "$bytes" then
    if type(v) ~= "string" or #v % 2 == 1 or find(v, "[^%x]") then
      fail(pos, "$bytes takes an even number of hex digits")
    end
    return (v:gsub("%x%x", function(h) return char(tonumber(h, 16)) end)), 0
  end
  -- $map: a list of [key, value] pairs
  if type(v) ~= "table" or (next(v) ~= nil and v[1] == nil) then
    fail(pos, "$map takes a list of [key, value] pairs")
  end
  local t, h = {}, 1
  for i = 1, #v do
    local pair = v[i]
    if type(pair) ~= "table" or #pair ~= 2 or next(pair, 2) ~= nil then
      fail(pos, "$map pair " .. i .. " is not a [key, value] list")
    end
    local k, x = pair[1], pair[2]
    local kt = type(k)
    if kt ~= "string" and kt ~= "number" and kt ~= "boolean" then
      fail(pos, "$map key " .. i .. " is a " .. kt ..
        " (keys are strings, numbers or booleans)")
    end
    if k ~= k then fail(pos, "$map key " .. i .. " is NaN") end
    if t[k] ~= nil then
      fail(pos, "$map has key " .. tostring(k) .. " twice")
    end
    t[k] = x
    local hx = heights[i] or 0
    if hx + 1 > h then h = hx + 1 end
  end
  return t, check_height(h, pos)
end

-- Each reader returns the value, the position after it and its table
-- height (0 for a scalar). `jdepth` bounds the JSON nesting (and so the
-- recursion); `pairs_of` marks the list of a $map, whose pairs and list
-- are not tables of the value.

local function read_array(s, pos, jdepth, pairs_of)
  local t, n, count, hole, h, heights = {}, 0, 0, nil, 1, pairs_of and {}
  local start = pos
  pos = skip_ws(s, pos + 1)
  if byte(s, pos) == 93 then
    return setmetatable(t, ARRAY), pos + 1, pairs_of == 1 and {} or 1
  end
  while true do
    local v, hv
    v, pos, hv = read_value(s, pos, jdepth + 1, pairs_of == 1 and 2 or nil)
    n = n + 1
    if v == nil then
      hole = hole or n
    else
      t[n], count = v, count + 1
    end
    if heights then
      heights[n] = hv
    elseif hv + 1 > h then
      h = hv + 1
    end
    pos = skip_ws(s, pos)
    local c = byte(s, pos)
    if c == 93 then break end
    if c ~= 44 then fail(pos, "expected ',' or ']' in a list") end
    pos = skip_ws(s, pos + 1)
  end
  if hole and (t[n] == nil or n > 2 * count) then
    fail(pos, "null at index " .. hole .. " of a list: the log keeps a " ..
      "list's nulls only between elements, at most one in two")
  end
  if pairs_of == 2 then -- a [key, value] pair: the deeper of the two
    h = math.max(heights[1] or 0, heights[2] or 0)
  elseif heights then
    return t, pos + 1, heights
  end
  return t, pos + 1, check_height(h, start)
end

local function read_object(s, pos, jdepth)
  local t, seen, keys, first, h, inner = {}, {}, 0, nil, 1, nil
  local start = pos
  pos = skip_ws(s, pos + 1)
  if byte(s, pos) == 125 then return t, pos + 1, 1 end
  while true do
    if byte(s, pos) ~= 34 then fail(pos, "expected a string key") end
    local k
    k, pos = read_string(s, pos)
    if seen[k] then fail(pos, "duplicate key \"" .. k .. "\"") end
    seen[k], keys, first = true, keys + 1, first or k
    pos = skip_ws(s, pos)
    if byte(s, pos) ~= 58 then fail(pos, "expected ':' after a key") end
    local v, hv
    local pairs_of = keys == 1 and k == "$map" and
      byte(s, skip_ws(s, pos + 1)) == 91 and 1 or nil
    v, pos, hv = read_value(s, skip_ws(s, pos + 1), jdepth + 1, pairs_of)
    t[k] = v
    if pairs_of then
      inner = hv -- the heights of the pairs' elements
    elseif hv + 1 > h then
      h = hv + 1
    end
    pos = skip_ws(s, pos)
    local c = byte(s, pos)
    if c == 125 then break end
    if c ~= 44 then fail(pos, "expected ',' or '}' in an object") end
    pos = skip_ws(s, pos + 1)
  end
  if keys == 1 and TAGS[first] then
    local v, th = untag(first, t[first], start, inner or {})
    return v, pos + 1, th
  end
  if inner then -- a "$map" key beside others: its list is a plain table
    local m = 0
    for _, x in pairs(inner) do if x > m then m = x end end
    if m + 3 > h then h = m + 3 end
  end
  return t, pos + 1, check_height(h, start)
end

function read_value(s, pos, jdepth, pairs_of)
  local c = byte(s, pos)
  if c == 34 then
    local v, p = read_string(s, pos)
    return v, p, 0
  end
  if c == 123 or c == 91 then
    if jdepth >= MAX_JSON_DEPTH then
      fail(pos, "JSON nested deeper than " .. MAX_JSON_DEPTH)
    end
    if c == 123 then return read_object(s, pos, jdepth) end
    return read_array(s, pos, jdepth, pairs_of)
  end
  if c == 116 and sub(s, pos, pos + 3) == "true" then return true, pos + 4, 0 end
  if c == 102 and sub(s, pos, pos + 4) == "false" then
    return false, pos + 5, 0
  end
  if c == 110 and sub(s, pos, pos + 3) == "null" then return nil, pos + 4, 0 end
  if c == nil then fail(pos, "unexpected end of input") end
  local v, p = read_number(s, pos)
  return v, p, 0
end

--- The value of one line of JSON; raises `flume: EINVAL: ...`.
function M.decode(line)
  if type(line) ~= "string" then
    error("flume: EINVAL: decode takes a string, not a " .. type(line), 0)
  end
  local okutf, bad = utf8len(line)
  if not okutf then fail(bad, "invalid UTF-8") end
  local pos = skip_ws(line, 1)
  if pos > #line then fail(pos, "no value") end
  local v
  v, pos = read_value(line, pos, 0)
  pos = skip_ws(line, pos)
  if pos <= #line then fail(pos, "trailing characters after the value") end
  return v
end

-- Encoding -------------------------------------------------------------------

local JSON_ESC = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
for i = 0, 31 do
  local c = char(i)
  JSON_ESC[c] = JSON_ESC[c] or fmt("\\u%04x", i)
end

local function put_string(s, out)
  if not find(s, '[%z\1-\31"\\\128-\255]') then -- plain ASCII
    out[#out + 1] = '"' .. s .. '"'
  elseif utf8len(s) then
    out[#out + 1] = '"' .. s:gsub('[%z\1-\31"\\]', JSON_ESC) .. '"'
  else
    out[#out + 1] = '{"$bytes":"' .. s:gsub(".", function(c)
      return fmt("%02x", byte(c))
    end) .. '"}'
  end
end

local function float_json(v)
  if v ~= v then
    local b = float_bits(v)
    for name, bits in pairs(NAN_BITS) do
      if b == bits then return '{"$float":"' .. name .. '"}' end
    end
    return fmt('{"$float":"0x%016x"}', b)
  end
  if v == math.huge then return '{"$float":"inf"}' end
  if v == -math.huge then return '{"$float":"-inf"}' end
  for _, f in ipairs { "%.15g", "%.16g", "%.17g" } do
    local s = fmt(f, v)
    if tonumber(s) == v then
      if not find(s, "[.e]") then s = s .. ".0" end
      return s
    end
  end
end

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "boolean" then return not a and b end
  return a < b
end

local put_value

local function put_table(t, out, depth, stack)
  if stack[t] then error("flume: EINVAL: cannot write a cyclic table as JSON", 0) end
  if depth >= M.max_depth then
    error("flume: EINVAL: tables nested deeper than " .. M.max_depth, 0)
  end
  if next(t) == nil then
    out[#out + 1] = getmetatable(t) == ARRAY and "[]" or "{}"
    return
  end
  stack[t] = true
  local keys, n, strings, ints, max = {}, 0, true, true, 0
  for k in pairs(t) do
    n = n + 1
    keys[n] = k
    if type(k) ~= "string" or
      find(k, "[\128-\255]") and not utf8len(k) then
      strings = false
    end
    if mtype(k) ~= "integer" or k < 1 then
      ints = false
    elseif k > max then
      max = k
    end
  end
  if ints and max <= 2 * n then -- a list, as msgpack writes it
    out[#out + 1] = "["
    for i = 1, max do
      if i > 1 then out[#out + 1] = "," end
      put_value(t[i], out, depth + 1, stack)
    end
    out[#out + 1] = "]"
  else
    if strings then sort(keys) else sort(keys, key_less) end
    if strings and not (n == 1 and TAGS[keys[1]]) then
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        put_string(k, out)
        out[#out + 1] = ":"
        put_value(t[k], out, depth + 1, stack)
      end
      out[#out + 1] = "}"
    else
      out[#out + 1] = '{"$map":['
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = "["
        put_value(k, out, depth + 1, stack)
        out[#out + 1] = ","
        put_value(t[k], out, depth + 1, stack)
        out[#out + 1] = "]"
      end
      out[#out + 1] = "]}"
    end
  end
  stack[t] = nil
end

function put_value(v, out, depth, stack)
  local t = type(v)
  if t == "string" then
    put_string(v, out)
  elseif t == "number" then
    out[#out + 1] = mtype(v) == "integer" and fmt("%d", v) or float_json(v)
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "table" then
    put_table(v, out, depth, stack)
  elseif v == nil then
    out[#out + 1] = "null"
  else
    error("flume: EINVAL: cannot write a " .. t .. " as JSON", 0)
  end
end

--- `value` as one line of JSON (see the top of this file for the forms).
function M.encode(value)
  local out = {}
  put_value(value, out, 0, {})
  return concat(out)
end

--- Whether `t` is marked as an array (for an empty one: `[]`, not `{}`).
function M.array(t) return setmetatable(t or {}, ARRAY) end

return M
