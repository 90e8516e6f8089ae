-- The read paths' shortcuts (issue 12): the decoder's cache of map keys
-- and the C get of a database that needs no Lua after decoding. Both must
-- give exactly what the plain paths give: the same values, the same
-- errors at the same place.
local flume = require "flume"
local core = require "flume.core"
local H = require "helpers.db"

local encode, decode = core.encode, core.decode

--- Exact equality of decoded values (integer vs float, nested tables).
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    return math.type(a) == math.type(b) and
      (a == b or (a ~= a and b ~= b))
  end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

--- A msgpack map of the given (already encoded) keys, each to its index.
local function map_of(encoded_keys)
  assert(#encoded_keys < 16)
  local parts = { string.char(0x80 + #encoded_keys) }
  for i, k in ipairs(encoded_keys) do
    parts[#parts + 1] = k .. encode(i)
  end
  return table.concat(parts)
end

describe("the decoder's key cache", function()
  it("gives the keys of many values, alike and not, exactly", function()
    -- Enough distinct keys to fill every slot many times over, in an
    -- order that revisits them (hits, misses, evictions), with the
    -- collector running in between.
    local keys = {}
    for i = 1, 600 do keys[i] = "k" .. i end
    for round = 1, 20 do
      local t = {}
      for j = 1, 12 do
        local k = keys[(round * 37 + j * 101) % #keys + 1]
        t[k] = j * round
      end
      local got = decode(encode(t))
      assert.is_true(same(t, got))
      for k, v in pairs(t) do assert.equal(v, got[k]) end
      if round % 5 == 0 then collectgarbage() end
    end
  end)

  it("tells apart keys that differ in one byte, anywhere", function()
    local base = "abcdefghijklmnopqrstuvwx" -- 24 bytes: the longest cached
    for len = 1, #base do
      local k = base:sub(1, len)
      for pos = 1, len do
        local other = k:sub(1, pos - 1) ..
          string.char((k:byte(pos) + 1) % 256) .. k:sub(pos + 1)
        -- One after the other, so that the second finds the first cached
        -- (same length, often the same slot).
        local a = decode(encode({ [k] = 1 }))
        local b = decode(encode({ [other] = 2 }))
        assert.same({ [k] = 1 }, a)
        assert.same({ [other] = 2 }, b)
        assert.is_nil(b[k])
      end
    end
  end)

  it("keeps keys of every length, around the cached ones", function()
    for len = 0, 70 do
      local k = string.rep("x", len)
      local k2 = string.rep("x", len) .. "y"
      local t = { [k] = len, [k2] = -len }
      for _ = 1, 3 do assert.is_true(same(t, decode(encode(t)))) end
    end
  end)

  it("keeps keys with embedded zeros and any bytes", function()
    local ks = { "\0", "\0\0", "a\0b", "a\0c", "\0a", "a\0", "\255\0\1",
      "\0\0\0\0\0\0\0\0\0", "\0\0\0\0\0\0\0\0\1" }
    for _ = 1, 3 do
      for i, k in ipairs(ks) do
        local got = decode(encode({ [k] = i, other = true }))
        assert.equal(i, got[k])
        for j, k2 in ipairs(ks) do
          if j ~= i then assert.is_nil(got[k2]) end
        end
      end
    end
  end)

  it("leaves keys that are not strings as they are", function()
    local t = { [1] = "a", [2.5] = "b", [true] = "c", [false] = "d",
      [-7] = "e", ["1"] = "f", ["true"] = "g", [math.maxinteger] = "h" }
    for _ = 1, 3 do assert.is_true(same(t, decode(encode(t)))) end
    local got = decode(encode(t))
    assert.equal("a", got[1])
    assert.equal("f", got["1"])
    assert.equal(math.type(next({ [1] = 1 })), "integer")
  end)

  it("reads str 8 keys (0xd9) as fixstr ones, and the same string",
    function()
    for _, k in ipairs({ "a", "abc", "seq", string.rep("z", 24) }) do
      local fix = string.char(0xa0 + #k) .. k
      local str8 = "\xd9" .. string.char(#k) .. k
      local a = decode(map_of({ fix }))
      local b = decode(map_of({ str8 }))
      local c = decode(map_of({ str8 }))
      assert.equal(1, a[k])
      assert.equal(1, b[k])
      assert.equal(1, c[k])
    end
  end)

  it("decodes nested maps and arrays of maps, cached keys at each depth",
    function()
    local v = { a = { a = { a = 1, b = 2 }, b = { 3, 4, { a = 5 } } },
      list = { { type = "x", seq = 1 }, { type = "y", seq = 2 },
        { type = "z", seq = 3, extra = { type = "w" } } } }
    for _ = 1, 3 do assert.is_true(same(v, decode(encode(v)))) end
  end)

  it("still refuses broken maps with the same messages", function()
    -- a key cut short: the cache does not read past the input
    for _, bad in ipairs({ "\x81\xa5abc", "\x81\xd9\x05ab", "\x81\xd9",
      "\x82\xa1a\x01\xa1" }) do
      local ok, err = pcall(decode, bad)
      assert.is_false(ok)
      assert.matches("EDECODE", err)
    end
    assert.has_error(function() decode("\x81\xa1a") end)
    -- a map key that is a map
    local ok, err = pcall(decode, "\x81\x80\x01")
    assert.is_false(ok)
    assert.matches("keys must be strings", err)
  end)

  it("leaves the caller's stack as it was", function()
    -- decode in a loop inside a function with locals: the values and the
    -- locals around are what they were
    local a, b = "before", 42
    for i = 1, 50 do
      local x, y, z = decode(encode({ k = i })), i, decode(encode(i))
      assert.equal(i, x.k)
      assert.equal(i, y)
      assert.equal(i, z)
    end
    assert.equal("before", a)
    assert.equal(42, b)
    assert.equal(3, select("#", decode(encode({ a = 1 })), 2, 3))
  end)
end)

describe("db:get's C path", function()
  for _, backend in ipairs(H.backends) do
    describe(backend, function()
      local ctx = H.fresh(backend)
      before_each(ctx.setup)
      after_each(ctx.teardown)

      it("gives what the plain path gives", function()
        local db = ctx.db
        local vals = { { a = 1 }, "s", 3, { list = { 1, 2 }, type = "t" } }
        for _, v in ipairs(vals) do db:append(v) end
        assert.is_function(rawget(db, "get"))
        for seq = 0, #vals - 1 do
          assert.is_true(same(vals[seq + 1], db:get(seq)))
          assert.is_true(same(db._c:get(true, seq), db:get(seq)))
        end
      end)

      it("raises what DB:get raises, at the caller", function()
        local db = ctx.db
        db:append({ a = 1 })
        local ok, err = pcall(function() return db:get("0") end)
        assert.is_false(ok)
        assert.equal("flume: EINVAL: invalid argument: db:get's seq must " ..
          "be an integer >= 0, not a string", err)
        ok, err = pcall(function() return db:get(1.5) end)
        assert.matches("^flume: EINVAL: .*, not 1.5$", err)
        ok, err = pcall(function() return db:get() end)
        assert.matches("^flume: EINVAL: .*, not nil$", err)
        ok, err = pcall(function() return db:get(0, function() end) end)
        assert.matches("^flume: EINVAL: db:get takes only a seq", err:gsub(
          "invalid argument: ", ""))
        ok, err = pcall(function() return db.get({}, 0) end)
        assert.matches("read_paths_spec.lua:%d+: bad argument #1 to " ..
          "'get' %(flume.db expected; call it as db:get%(...%)%)$", err)
        ok, err = pcall(function() return db.get(0) end)
        assert.matches("flume.db expected", err)
        for _, seq in ipairs({ -1, math.mininteger }) do
          assert.error_matches(function() db:get(seq) end, "^flume: EINVAL")
        end
        for _, seq in ipairs({ 1, math.maxinteger }) do
          local _, want = pcall(db._c.get, db._c, true, seq)
          assert.matches("^flume: ENOTFOUND: ", want)
          assert.has_error(function() db:get(seq) end, want)
        end
      end)

      it("reads another database given as self, as DB:get did", function()
        local other, dir = H.open(backend)
        other:append("other's")
        ctx.db:append("mine")
        assert.equal("other's", ctx.db.get(other, 0))
        assert.equal("mine", other.get(ctx.db, 0))
        other:close()
        H.rm(dir and dir:match("^(.*)/db$"))
      end)

      it("raises ECLOSED once closed", function()
        local db = ctx.db
        db:append(1)
        local get = db.get
        db:close()
        assert.has_error(function() db:get(0) end, "flume: ECLOSED: " ..
          "database is closed")
        assert.has_error(function() get(db, 0) end, "flume: ECLOSED: " ..
          "database is closed")
      end)
    end)
  end

  it("is not used with a mapper or a custom codec", function()
    local db = flume.open(nil, { mapper = function(v, seq)
      return { v = v, seq = seq }
    end })
    db:append("x")
    assert.is_nil(rawget(db, "get"))
    assert.same({ v = "x", seq = 0 }, db:get(0))
    db:close()
    local codec = { name = "upper", encode = function(s) return s:upper() end,
      decode = function(s) return s:lower() end }
    db = flume.open(nil, { codec = codec })
    db:append("abc")
    assert.is_nil(rawget(db, "get"))
    assert.equal("abc", db:get(0))
    db:close()
  end)

  it("gives a raw database's bytes", function()
    local db = flume.open(nil, { codec = "raw" })
    db:append("\0bytes\255")
    assert.equal("\0bytes\255", db:get(0))
    db:close()
  end)
end)
