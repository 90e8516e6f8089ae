-- The attacks of the hostile-script spec: each is Lua code that runs in a
-- view's map, reduce, top level or method (`where` lists which), and what
-- the view must fail with (`expect`, a Lua pattern; nil when the attack
-- need not fail the view, only leave everything else alone).
local A = {}

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

--- The view script that runs `a` in `where`.
function A.script(a, where)
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
