-- The key size limit and range bounds of any length (issue 8, defect 2):
-- a key of up to 503 bytes encoded is stored by every kind of view, a
-- longer one fails the view; a range bound of any length (far past the
-- limit) has its place in the key order and reads the same entries forward
-- and reverse, from Lua and from a view method's read handle.
local H = require "helpers.db"

-- A string of n bytes encodes as n + 2 (a tag and a terminator), so 501 is
-- the longest string key a view stores.
local LONGEST = 501

-- The stored keys: lengths around the limit, sharing prefixes with the
-- bounds below, on both sides of them in the order.
local KEYS = {
  "y", ("y"):rep(LONGEST), "z", "zz", ("z"):rep(250), ("z"):rep(499),
  ("z"):rep(500), ("z"):rep(LONGEST), ("z"):rep(499) .. "y",
  ("z"):rep(499) .. "{", "{",
}

-- Bounds: empty, short, around the limit, just past it, and far past it.
local BOUNDS = {
  "", "z", ("z"):rep(250), ("z"):rep(500), ("z"):rep(LONGEST),
  ("z"):rep(502), ("z"):rep(509), ("z"):rep(510), ("z"):rep(600),
  ("z"):rep(2000), ("z"):rep(2000) .. "y", ("z"):rep(499) .. "y",
  ("y"):rep(2000), ("{"):rep(2000),
}

-- A key as a short name for messages: "z*501", "z*499y".
local function short(k)
  local c = k:sub(1, 1)
  local run = #k:match("^" .. c:gsub("%p", "%%%0") .. "*")
  return c .. "*" .. run .. k:sub(run + 1)
end

local function shorts(list)
  local out = {}
  for i, k in ipairs(list) do out[i] = short(k) end
  return out
end

-- The naive answer: every key in order that the options let through.
local function expected(opts)
  local sorted = {}
  for i, k in ipairs(KEYS) do sorted[i] = k end
  table.sort(sorted)
  local out = {}
  for _, k in ipairs(sorted) do
    local lo, lo_incl = opts.gte, true
    if lo == nil then lo, lo_incl = opts.gt, false end
    local hi, hi_incl = opts.lte, true
    if hi == nil then hi, hi_incl = opts.lt, false end
    if (lo == nil or k > lo or (lo_incl and k == lo))
        and (hi == nil or k < hi or (hi_incl and k == hi)) then
      out[#out + 1] = k
    end
  end
  if opts.reverse then
    local r = {}
    for i = #out, 1, -1 do r[#r + 1] = out[i] end
    out = r
  end
  return shorts(out)
end

-- Every option table worth reading: one bound or two, each kind of bound,
-- both directions.
local function cases()
  local list = {}
  for _, b in ipairs(BOUNDS) do
    for _, op in ipairs({ "gt", "gte", "lt", "lte" }) do
      for _, reverse in ipairs({ false, true }) do
        list[#list + 1] = { [op] = b, reverse = reverse }
      end
    end
  end
  for _, a in ipairs(BOUNDS) do
    for _, b in ipairs(BOUNDS) do
      list[#list + 1] = { gte = a, lt = b, reverse = #a % 2 == 0 }
      list[#list + 1] = { gt = a, lte = b, reverse = #b % 2 == 1 }
    end
  end
  return list
end

-- A short label for a failing case.
local function label(opts)
  local parts = {}
  for _, op in ipairs({ "gt", "gte", "lt", "lte" }) do
    local b = opts[op]
    if b then
      parts[#parts + 1] = op .. "=" .. (b == "" and '""' or short(b))
    end
  end
  if opts.reverse then parts[#parts + 1] = "reverse" end
  return table.concat(parts, " ")
end

-- Keys a read yields in order, from Lua (index entries: one per seq).
local function lua_keys(view, opts)
  local out = {}
  for k in view:read(opts) do
    if out[#out] ~= k then out[#out + 1] = k end
  end
  return shorts(out)
end

-- A view of `kind` keyed by the value's `k`, with a method reading through
-- its read handle.
local function view_of(kind)
  local methods = { keys = { "async", function(h, opts)
    local out = {}
    for k in h.read(opts) do
      if out[#out] ~= k then out[#out + 1] = k end
    end
    return out
  end } }
  if kind == "index" then
    return { version = 1, map = function(v) return v.k end,
      methods = methods }
  end
  return { version = 1, map = function(v) return v.k, 1 end,
    reduce = function(a, n) return (a or 0) + n end, methods = methods }
end

for _, backend in ipairs(H.backends) do
  for _, kind in ipairs({ "index", "group" }) do
    describe("a " .. kind .. " view on " .. backend, function()
      local ctx = H.fresh(backend)
      before_each(ctx.setup)
      after_each(ctx.teardown)

      local function fill()
        ctx.db:use("by", view_of(kind))
        local vals = {}
        for _, k in ipairs(KEYS) do vals[#vals + 1] = { k = k } end
        -- More than a read chunk (256) of the longest key: the read goes
        -- on from a resume point of the longest entry.
        for _ = 1, 300 do vals[#vals + 1] = { k = ("z"):rep(LONGEST) } end
        ctx.db:append(vals, { batch = true })
      end

      it("reads a reverse range with a 2000-byte upper bound", function()
        fill()
        local opts = { lte = ("z"):rep(2000), reverse = true }
        assert.same(expected(opts), lua_keys(ctx.db.by, opts))
        assert.same(expected(opts), shorts(ctx.db.by:keys(opts)))
      end)

      it("reads bounds of any length as the key order says, from Lua",
        function()
          fill()
          for _, opts in ipairs(cases()) do
            assert.same(expected(opts), lua_keys(ctx.db.by, opts),
              label(opts))
          end
        end)

      it("reads bounds of any length as the key order says, in a method",
        function()
          fill()
          for _, opts in ipairs(cases()) do
            assert.same(expected(opts), shorts(ctx.db.by:keys(opts)), label(opts))
          end
        end)

      it("gets nothing for a key past the limit", function()
        fill()
        local got = ctx.db.by:get(("z"):rep(2000))
        if kind == "index" then assert.same({}, got) else assert.is_nil(got) end
      end)

      it("stores a 503-byte key and fails on a 504-byte one", function()
        ctx.db:use("by", view_of(kind))
        ctx.db:append({ k = ("z"):rep(LONGEST) })
        assert.equal(1, #lua_keys(ctx.db.by, {}))
        ctx.db:append({ k = ("z"):rep(LONGEST + 1) })
        local ok, err = pcall(function() return lua_keys(ctx.db.by, {}) end)
        assert.is_false(ok)
        assert.matches("504 bytes encoded, over 503", err, 1, true)
      end)
    end)
  end
end
