-- The attacks of the hostile-script spec: each is Lua code that runs in a
-- view's map, reduce, top level or method (`where` lists which), and what
-- the view must fail with (`expect`, a Lua pattern; nil when the attack
-- need not fail the view, only leave everything else alone).
local A = {}

-- Attacks that take a while each run in two places only.
local COSTLY = { "reduce", "method" }

local list = {
  { name = "pcall_loop", expect = "instruction limit exceeded",
    code = "while true do pcall(function() while true do end end) end" },
  { name = "xpcall_handler", expect = "instruction limit exceeded",
    code = "while true do xpcall(function() while true do end end, " ..
      "function() while true do end end) end" },
  { name = "gsub_callback", expect = "instruction limit exceeded",
    code = "while true do pcall(string.gsub, 'aaa', 'a', " ..
      "function() while true do end end) end" },
  { name = "sort_comparator", expect = "instruction limit exceeded",
    code = "while true do pcall(table.sort, { 3, 1, 2, 5, 4 }, " ..
      "function() while true do end end) end" },
  { name = "index_metamethod", expect = "instruction limit exceeded",
    code = "local t = setmetatable({}, { __index = function() " ..
      "while true do end end }) while true do pcall(function() " ..
      "return t.x end) end" },
  { name = "lt_concat_metamethods", expect = "instruction limit exceeded",
    code = "local mt = { __lt = function() while true do end end, " ..
      "__concat = function() while true do end end } " ..
      "local a, b = setmetatable({}, mt), setmetatable({}, mt) " ..
      "while true do pcall(function() return a < b end) " ..
      "pcall(function() return a .. b end) end" },
  { name = "tostring_metamethod", expect = "instruction limit exceeded",
    code = "local t = setmetatable({}, { __tostring = function() " ..
      "while true do end end }) while true do pcall(tostring, t) end" },
  { name = "close_metamethod", expect = "instruction limit exceeded",
    code = "while true do pcall(function() local x <close> = " ..
      "setmetatable({}, { __close = function() while true do end end }) " ..
      "end) end" },
  { name = "pcall_as_handler", expect = "instruction limit exceeded",
    code = "while true do xpcall(function() while true do end end, " ..
      "pcall) end" },
  { name = "gc_finalizer", expect = "cannot set a finalizer",
    code = "setmetatable({}, { __gc = function() while true do end end })" },
  { name = "gc_added_later",
    code = "local mt = {} KEEP = setmetatable({}, mt) " ..
      "mt.__gc = function() while true do end end" },
  { name = "string_metatable",
    code = "pcall(function() getmetatable('').__index.upper = " ..
      "function() return 'pwned' end end) " ..
      "string.upper = function() return 'pwned' end" },
  { name = "def_metatable", places = { "top" },
    expect = "no integer version",
    source = "return setmetatable({ reduce = function() end }, { " ..
      "__index = function() while true do end end })" },
  -- memory: under a cap of 32 MiB (the view's `memory` option) where
  -- `memory` says so, else (and in a top level, which runs before its
  -- option is known) under the default cap
  { name = "mem_rep_huge", expect = "not enough memory", returned = true,
    code = "local x = string.rep('x', 4e8)" },
  { name = "mem_state_growth", expect = "not enough memory", memory = 32,
    places = { "reduce" }, returned = "replaced",
    source = "return { version = 1, reduce = function(s, v) " ..
      "s = type(s) == 'table' and s or {} " ..
      "s[#s + 1] = string.rep('x', 6 << 20) .. #s return s end }" },
  { name = "mem_global_growth", expect = "not enough memory", memory = 32,
    returned = "replaced", places = { "map" },
    code = "G = G or {} for i = 1, 8 do " ..
      "G[#G + 1] = string.rep('y', 1 << 20, tostring(#G)) end" },
  { name = "mem_pcall_catch", expect = "not enough memory", memory = 32,
    returned = true, places = COSTLY,
    code = "while true do pcall(function() local t = {} " ..
      "for i = 1, 1e3 do t[i] = string.rep('q', 1 << 20) .. i end " ..
      "end) end" },
  { name = "mem_concat", expect = "not enough memory", memory = 32,
    returned = true, places = COSTLY,
    code = "local t = {} for i = 1, 100 do " ..
      "t[i] = string.rep('z', 1 << 20, tostring(i)) end " ..
      "local x = table.concat(t)" },
  { name = "mem_format", expect = "not enough memory", memory = 32,
    returned = true, places = COSTLY,
    code = "local a = string.rep('a', 100 << 20) " ..
      "local x = string.format('%s%s%s', a, a, a)" },
  -- work inside C functions, which the instruction hook does not see
  { name = "backtracking_pattern", expect = "instruction limit exceeded",
    code = "string.find(('a'):rep(60), ('a-'):rep(20) .. 'b')" },
  { name = "long_set", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "string.find(('x'):rep(1e6), '[' .. ('a'):rep(1e5) .. ']')" },
  { name = "plain_find_loop", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "local s = ('x'):rep(1e6) for i = 1, 1e6 do " ..
      "s:find('z', 1, true) end" },
  { name = "gsub_passes", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "local x = string.rep('x', 10 << 20) " ..
      "for i = 1, 10 do x = x:gsub('x', 'x') end" },
  { name = "rep_loop", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "for i = 1, 1e6 do local s = string.rep('x', 1 << 24) end" },
  { name = "sort_loop", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "local t = {} for i = 1, 2e5 do t[i] = (i * 7919) % 2e5 end " ..
      "for k = 1, 1e4 do table.sort(t) end" },
  { name = "concat_loop", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "local t = {} for i = 1, 1000 do t[i] = string.rep('c', 1000) " ..
      "end for k = 1, 1e6 do local s = table.concat(t) end" },
  { name = "format_loop", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "local a = string.rep('f', 1 << 20) " ..
      "for k = 1, 1e6 do local s = string.format('%s%s', a, a) end" },
  { name = "move_huge", expect = "instruction limit exceeded",
    code = "table.move({}, 1, 1e12, 1)" },
  { name = "insert_front", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "local t = {} for i = 1, 1e6 do table.insert(t, 1, i) end" },
  { name = "unpack_loop", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "local t = {} for i = 1, 2e5 do t[i] = i end " ..
      "for k = 1, 1e6 do local n = select('#', table.unpack(t)) end" },
  { name = "vm_concat_loop", expect = "instruction limit exceeded",
    places = COSTLY,
    code = "local a = string.rep('v', 1 << 20) " ..
      "for i = 1, 1e7 do local s = a .. i end" },
  -- still open: comparing two long equal strings is one instruction
  { name = "long_string_compare", open = true, places = { "reduce" },
    code = "local a, b = string.rep('e', 1 << 26), string.rep('e', 1 << 26) " ..
      "for i = 1, 1e7 do local same = a == b end" },
  -- the value a view receives is a lazy proxy (runtime/views/lazy.c):
  -- its metatable is out of reach, a miss costs instructions, and
  -- whatever a script does to it, the good views read theirs
  { name = "proxy_metatable", places = { "map", "reduce" },
    code = "if getmetatable(v) ~= nil then error('pwned: a metatable') end " ..
      "setmetatable(v, { __index = function() return 'pwned' end }) " ..
      "if v.type == 'pwned' or v.amount == 'pwned' then error('pwned') end" },
  { name = "proxy_miss_loop", expect = "instruction limit exceeded",
    places = { "map", "reduce" },
    code = "local i = 0 while true do i = i + 1 local x = v['k' .. i % 64] " ..
      "x = v[i] x = v[true] x = v[0 / 0 == 0 / 0] end" },
  { name = "proxy_walk_loop", expect = "instruction limit exceeded",
    places = { "map", "reduce" },
    code = "while true do for k, x in pairs(v) do local y = rawget(v, k) " ..
      "end local n = #v + rawlen(v) local k = next(v) end" },
  { name = "proxy_keep", places = { "map", "reduce" },
    code = "KEEP = KEEP or {} KEEP[#KEEP + 1] = v " ..
      "KEEP[v] = { v, { v } } if #KEEP > 4 then " ..
      "local w = KEEP[#KEEP - 3] w.amount = w.amount end" },
  { name = "error_nil", expect = "error object is a nil value",
    code = "error(nil)" },
  { name = "error_table", expect = "error object is a table value",
    code = "error({})" },
}

-- The same attacks in every place a script's code runs.
A.places = { "map", "reduce", "top", "method" }

function A.find(name)
  for _, a in ipairs(list) do
    if a.name == name then return a end
  end
end

function A.all() return list end

--- The view script that runs `a` in `where` (with its memory cap).
function A.script(a, where)
  local src = A.template(a, where)
  if a.memory then
    src = src:gsub("return { version = 1, ", "return { version = 1, " ..
      "memory = " .. a.memory .. " << 20, ")
  end
  return src
end

function A.template(a, where)
  if a.source then
    return a.source
  elseif where == "map" then
    return "return { version = 1, map = function(v) " .. a.code ..
      "\n return 'k', 1 end, reduce = function(s, n) return (s or 0) + n end }"
  elseif where == "reduce" then
    return "return { version = 1, reduce = function(s, v) " .. a.code ..
      "\n return (s or 0) + 1 end }"
  elseif where == "top" then
    return a.code .. "\nreturn { version = 1, " ..
      "reduce = function(s) return (s or 0) + 1 end }"
  else
    return "return { version = 1, reduce = function(s) return (s or 0) + 1 " ..
      "end, methods = { m = { 'sync', function(s) " .. a.code ..
      "\n return s end } } }"
  end
end

return A
