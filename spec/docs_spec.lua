-- The Lua reference (doc/lua.md) documents every public function of the
-- module: each `function DB:x`, `function M.x` / `M.x = ...` of
-- flume/init.lua and `function View:x` of flume/view.lua (names starting
-- with '_' are private) has its heading there, and every heading names a
-- function that exists.
local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

describe("doc/lua.md", function()
  local doc = read("doc/lua.md")
  local headings = {}
  for h in doc:gmatch("\n### ([%w_.:]+)") do headings[h] = true end

  local function public(path, patterns)
    local names = {}
    local src = read(path)
    for _, p in ipairs(patterns) do
      for prefix, name in src:gmatch(p[1]) do
        if name:sub(1, 1) ~= "_" then names[#names + 1] = p[2] .. name end
        local _ = prefix
      end
    end
    return names
  end

  it("has a heading for every public function", function()
    local want = {}
    for _, n in ipairs(public("views-lua/flume/init.lua", {
      { "\n(function DB:)([%w_]+)", "db:" },
      { "\n(function M%.)([%w_]+)", "flume." },
      { "\n(M%.)([%w_]+) *=", "flume." },
    })) do want[#want + 1] = n end
    for _, n in ipairs(public("views-lua/flume/view.lua", {
      { "\n(function View:)([%w_]+)", "view:" },
    })) do want[#want + 1] = n end
    local flume = require "flume"
    for k in pairs(flume.errors) do want[#want + 1] = "flume.errors." .. k end
    assert.is_true(#want > 25, #want .. " functions found")
    local missing = {}
    for _, n in ipairs(want) do
      -- flume.errors is documented by its functions
      if not headings[n] and n ~= "flume.errors" and n ~= "flume.core" then
        missing[#missing + 1] = n
      end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("documents only what exists", function()
    local flume = require "flume"
    local db = flume.open(nil)
    db:use("v", "return { version = 1, initial = 0, reduce = " ..
      "function(t) return t end }")
    for h in pairs(headings) do
      local where, name = h:match("^([%w]+)[.:](.+)$")
      local obj = where == "flume" and flume or where == "db" and db or
        where == "view" and db.v
      if name:find("^errors%.") then
        obj, name = flume.errors, name:sub(8)
      end
      assert(obj and obj[name] ~= nil, "doc/lua.md documents " .. h ..
        ", which does not exist")
    end
    db:close()
  end)
end)
