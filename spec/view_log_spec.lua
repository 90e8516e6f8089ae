-- Views can log (issue 13): print(...) and log(fmt, ...) in a view script
-- reach the host, tagged with the view's name and the seq being processed:
-- the open option on_log, else flume.on_log (a line on stderr). Messages
-- are rate-limited per view (flume.h's FLUME_LOG_RATE a second, the rest
-- counted and reported as one "(N messages dropped)"), cut at FLUME_LOG_MAX
-- bytes, and never change what a view computes. Every message is delivered
-- by the time the database has closed, so the checks come after close.
local flume = require "flume"
local H = require "spec.helpers.db"

local RATE, MAX = 100, 1024 -- FLUME_LOG_RATE, FLUME_LOG_MAX

--- A database whose view messages are collected into `got` as
-- { view, seq, msg }.
local function logged(backend, extra)
  local got = {}
  local opts = { on_log = function(view, seq, msg)
    got[#got + 1] = { view = view, seq = seq, msg = msg }
  end }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local db, dir = H.open(backend or "memory", opts)
  return db, got, dir
end

--- The messages of `got` as "view@seq: msg" lines (seq "-" when nil).
local function lines(got)
  local out = {}
  for i, m in ipairs(got) do
    out[i] = ("%s@%s: %s"):format(tostring(m.view), m.seq or "-", m.msg)
  end
  return out
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

describe("print in a view", function()
  it("reaches on_log from map and reduce, with the view's name and the " ..
     "seq", function()
    local db, got = logged()
    db:use("count", [[return { version = 1,
      map = function(v, seq) print("map", v) return v % 2, 1 end,
      reduce = function(acc, n, key, seq) print("reduce", key)
        return (acc or 0) + n end }]])
    db:use("idx", [[return { version = 1,
      map = function(v, seq) print("index", v, seq) return v end }]])
    db:append({ 10, 11 }, { batch = true })
    assert.equal(1, db.count:get(0))
    db:close()
    table.sort(got, function(a, b)
      if a.view ~= b.view then return a.view < b.view end
      return a.seq < b.seq or (a.seq == b.seq and a.msg < b.msg)
    end)
    assert.same({
      "count@0: map\t10", "count@0: reduce\t0",
      "count@1: map\t11", "count@1: reduce\t1",
      "idx@0: index\t10\t0", "idx@1: index\t11\t1",
    }, lines(got))
  end)

  for _, backend in ipairs(H.backends) do
  it("gives a reduce view's messages in order, before a read that " ..
     "waited for them returns (" .. backend .. ")", function()
    local db, got, dir = logged(backend)
    db:use("sum", [[return { version = 1, initial = 0,
      reduce = function(t, v, seq) print(t, "+", v) return t + v end }]])
    db:append({ 1, 2, 3 }, { batch = true })
    assert.equal(6, db.sum:get())
    -- at top level the loop turn that released the read delivered them
    assert.same({ "sum@0: 0\t+\t1", "sum@1: 1\t+\t2", "sum@2: 3\t+\t3" },
      lines(got))
    db:close()
    assert.equal(3, #got)
    if dir then H.rm(dir:match("(.*)/db$")) end
  end)
  end

  it("turns each argument into text as tostring does, nil and several " ..
     "included", function()
    local db, got = logged()
    db:use("v", [[return { version = 1, initial = 0, reduce = function(t, v)
      print()
      print(nil)
      print(1, 2.5, -0.0, math.maxinteger, true, false, nil, "s")
      print(setmetatable({}, { __tostring = function() return "<obj>" end }))
      print(setmetatable({}, { __name = "Thing" }) ~= nil, {} ~= nil)
      print(v.name, v.list[2], #v.list)
      local o = {} print(o == o, tostring(o):match("^table: ") ~= nil)
      return t + 1 end }]])
    db:append({ name = "x", list = { 1, 2 } })
    assert.equal(1, db.v:get())
    db:close()
    assert.same({
      "",
      "nil",
      "1\t2.5\t-0.0\t" .. math.maxinteger .. "\ttrue\tfalse\tnil\ts",
      "<obj>",
      "true\ttrue",
      "x\t2\t2",
      "true\ttrue",
    }, (function()
      local out = {}
      for i, m in ipairs(got) do out[i] = m.msg end
      return out
    end)())
  end)

  it("has log(fmt, ...): string.format, or one value as print gives it",
     function()
    local db, got = logged()
    db:use("v", [[return { version = 1, initial = 0, reduce = function(t, v)
      log("%s has %d items (%.1f%%)", v.name, #v.list, 50)
      log("100%")
      log(42)
      return t + 1 end }]])
    db:append({ name = "x", list = { 1, 2 } })
    db.v:get()
    db:close()
    assert.same({ "v@0: x has 2 items (50.0%)", "v@0: 100%", "v@0: 42" },
      lines(got))
  end)

  it("tags a mapper's messages with no view and a script's top level " ..
     "and methods with no seq", function()
    local db, got = logged(nil, { mapper = function(v, seq)
      print("mapping", seq)
      return v
    end })
    db:use("v", [[print("loading") return { version = 1, initial = 0,
      reduce = function(t, v) return t + v end,
      methods = { twice = { "async", function(t) print("twice", t)
        return 2 * t end } } }]])
    db:append(5)
    assert.equal(10, db.v:twice())
    db:close()
    table.sort(got, function(a, b) return a.msg < b.msg end)
    assert.same({ "v@-: loading", "nil@0: mapping\t0", "v@-: twice\t5" },
      lines(got))
  end)

  it("logs again when a view is rebuilt, and its results do not change",
     function()
    local db, got = logged()
    local quiet = [[return { version = 1, map = function(v)
      return v % 3, v end, reduce = function(a, v) return (a or 0) + v end }]]
    local loud = [[return { version = 1, map = function(v, seq)
      print("seq", seq) return v % 3, v end,
      reduce = function(a, v) log("acc %s", a) return (a or 0) + v end }]]
    db:use("quiet", quiet)
    db:use("loud", loud)
    db:append(range(20), { batch = true }) -- 80 messages: one window
    local a, b = {}, {}
    for k, acc in db.quiet:read() do a[#a + 1] = { k, acc } end
    for k, acc in db.loud:read() do b[#b + 1] = { k, acc } end
    assert.same(a, b)
    db:rebuild()
    local c = {}
    for k, acc in db.loud:read() do c[#c + 1] = { k, acc } end
    assert.same(a, c)
    db:close()
    local first = 0
    for _, m in ipairs(got) do
      if m.msg == "seq\t0" then first = first + 1 end
    end
    assert.equal(2, first)
  end)

  it("is delivered from a view that then fails, and the view's error " ..
     "says why", function()
    local db, got = logged()
    db:use("v", [[return { version = 1, initial = 0, reduce = function(t, v)
      print("about to look at", v)
      if v == 3 then error("three is bad") end
      return t + v end }]])
    db:append({ 1, 2, 3, 4 }, { batch = true })
    H.raises(function() db.v:get() end,
      "view 'v' failed at seq 2: .*three is bad")
    db:close()
    assert.same({ "v@0: about to look at\t1", "v@1: about to look at\t2",
      "v@2: about to look at\t3" }, lines(got))
  end)
end)

describe("the rate limit", function()
  it("delivers at most FLUME_LOG_RATE messages a window and counts the " ..
     "rest exactly", function()
    local db, got = logged()
    local N = 100000
    db:use("loud", [[return { version = 1, initial = 0,
      reduce = function(t, v, seq) print("value", v) return t + 1 end }]])
    db:use("quiet", [[return { version = 1, initial = 0,
      reduce = function(t, v) return t + 1 end }]])
    db:append(range(N), { batch = true })
    assert.equal(N, db.loud:get())
    assert.equal(N, db.quiet:get())
    db:close()
    local plain, dropped, reports, run, longest = 0, 0, 0, 0, 0
    local last = 0
    for _, m in ipairs(got) do
      assert.equal("loud", m.view)
      local k = m.msg:match("^%((%d+) messages? dropped%)$")
      if k then
        assert.is_nil(m.seq)
        dropped, reports, run = dropped + tonumber(k), reports + 1, 0
      else
        -- the ones delivered are in order, each with its own seq
        local v = tonumber(m.msg:match("^value\t(%d+)$"))
        assert.equal(v - 1, m.seq)
        assert.is_true(v > last)
        last = v
        plain, run = plain + 1, run + 1
        if run > longest then longest = run end
      end
    end
    assert.equal(N, plain + dropped)
    assert.is_true(reports >= 1)
    assert.is_true(longest <= RATE, longest .. " messages in one window")
  end)

  it("limits each view on its own", function()
    local db, got = logged()
    for _, name in ipairs({ "a", "b" }) do
      db:use(name, [[return { version = 1, initial = 0,
        reduce = function(t, v) print(v) return t + 1 end }]])
    end
    db:append(range(1000), { batch = true })
    db.a:get(); db.b:get()
    db:close()
    local by = { a = { 0, 0 }, b = { 0, 0 } }
    for _, m in ipairs(got) do
      local k = m.msg:match("^%((%d+) messages? dropped%)$")
      local c = by[m.view]
      if k then c[2] = c[2] + tonumber(k) else c[1] = c[1] + 1 end
    end
    for _, name in ipairs({ "a", "b" }) do
      assert.is_true(by[name][1] >= RATE, name) -- its own first window
      assert.equal(1000, by[name][1] + by[name][2], name)
    end
  end)
end)

describe("a long message", function()
  it("is cut at FLUME_LOG_MAX bytes, at a character boundary, and says " ..
     "so", function()
    local db, got = logged()
    db:use("v", [[return { version = 1, initial = 0, reduce = function(t, v)
      print(string.rep("é", 2000))      -- 4000 bytes, 2 a character
      print(string.rep("x", 1023) .. "é") -- the é would straddle the cut
      print(string.rep("y", 1024))
      return t + 1 end }]])
    db:append(1)
    db.v:get()
    db:close()
    local one, two, three = got[1].msg, got[2].msg, got[3].msg
    assert.equal(("é"):rep(512) .. " ... (cut: 4000 bytes in all)", one)
    assert.equal(("x"):rep(1023) .. " ... (cut: 1025 bytes in all)", two)
    assert.is_truthy(utf8.len(one))
    assert.equal(("y"):rep(MAX), three) -- exactly the cap: not cut
  end)

  it("costs a huge string no copy: it is cut like any other", function()
    local db, got = logged()
    db:use("v", [[return { version = 1, initial = 0, reduce = function(t, v)
      local s = string.rep("z", 1 << 24)
      print(s, s)
      return t + #s end }]])
    db:append(1)
    assert.equal(1 << 24, db.v:get())
    db:close()
    assert.equal(("z"):rep(MAX) .. " ... (cut: " .. (2 * (1 << 24) + 1) ..
      " bytes in all)", got[1].msg)
  end)
end)

describe("a hostile print", function()
  local function fails(body, pattern)
    local db, got = logged()
    db:use("v", "return { version = 1, initial = 0, reduce = function(t, v) "
      .. body .. " return t + 1 end }")
    db:append(1)
    H.raises(function() db.v:get() end, "view 'v' failed at seq 0: .*" ..
      pattern)
    -- the database goes on: other views and the log
    db:use("w", [[return { version = 1, initial = 0,
      reduce = function(t) return t + 1 end }]])
    assert.equal(1, db.w:get())
    db:close()
    return got
  end

  it("fails the view clearly when a __tostring raises", function()
    fails([[print(setmetatable({}, { __tostring = function()
      error("no text for you") end }))]], "no text for you")
  end)

  it("fails the view clearly when a __tostring returns no string",
     function()
    fails([[print(setmetatable({}, { __tostring = function() return {} end
      }))]], "'__tostring' must return a string")
  end)

  it("fails the view clearly when a __tostring tries to yield", function()
    fails([[print(setmetatable({}, { __tostring = function()
      return coroutine.yield() end }))]], "coroutine")
  end)

  it("bounds a __tostring that never returns by the instruction limit",
     function()
    fails([[print(setmetatable({}, { __tostring = function()
      while true do end end }))]], "instruction limit exceeded")
  end)

  it("fails the view clearly on a bad format", function()
    fails([[log("%d", "x")]], "v:1: bad argument #2 to 'log' %(number expected, got string%)")
  end)

  it("cannot reach io or the host through print", function()
    local db, got = logged()
    db:use("v", [[return { version = 1, initial = 0, reduce = function(t, v)
      print(io, os, require, debug) return t + 1 end }]])
    db:append(1)
    db.v:get()
    db:close()
    assert.same({ "v@0: nil\tnil\tnil\tnil" }, lines(got))
  end)
end)

describe("flume.on_log and the default", function()
  it("writes one line per message on stderr without on_log", function()
    local dir = H.tmpdir()
    local script = dir .. "/child.lua"
    H.write(script, [[
      local flume = require "flume"
      local db = flume.open()
      db:use("v", 'return { version = 1, initial = 0, reduce = ' ..
        'function(t, v, seq) print("got", v) return t + v end }')
      db:use("w", 'print("top level") return { version = 1, ' ..
        'map = function(v) return v end }')
      db:append({ 5, 6 }, { batch = true })
      io.stdout:write("sum ", db.v:get(), "\n")
      db:close()
    ]])
    local err = dir .. "/err"
    local p = io.popen(H.lua_command(script) .. " 2>" .. H.q(err))
    local out = p:read("a")
    assert.is_true(p:close())
    local f = assert(io.open(err))
    local text = f:read("a")
    f:close()
    H.rm(dir)
    assert.equal("sum 11\n", out)
    assert.equal("flume: view w: top level\n" ..
      "flume: view v at seq 0: got\t5\n" ..
      "flume: view v at seq 1: got\t6\n", text)
  end)

  it("goes to stderr from the command line, its output untouched",
     function()
    local dir = H.tmpdir()
    local db = flume.open(dir .. "/db", { on_log = function() end })
    db:use("sum", [[return { version = 1, initial = 0,
      reduce = function(t, v, seq) print("adding", v) return t + v end }]])
    db:append({ 1, 2 }, { batch = true })
    assert.equal(3, db.sum:get())
    db:close()
    local err = dir .. "/err"
    local p = io.popen(H.flume_command({ "rebuild", "--quiet", dir .. "/db" })
      .. " 2>" .. H.q(err))
    local out = p:read("a")
    assert.is_true(p:close())
    local f = assert(io.open(err))
    local text = f:read("a")
    f:close()
    H.rm(dir)
    assert.matches("^rebuilt sum from 2 values", out)
    assert.equal("flume: view sum at seq 0: adding\t1\n" ..
      "flume: view sum at seq 1: adding\t2\n", text)
  end)

  it("is replaceable: a database without on_log calls flume.on_log",
     function()
    local saved = flume.on_log
    local got = {}
    flume.on_log = function(view, seq, msg)
      got[#got + 1] = { view = view, seq = seq, msg = msg }
    end
    local ok, err = pcall(function()
      local db = flume.open()
      db:use("v", [[return { version = 1, initial = 0,
        reduce = function(t, v) print("hi") return t + 1 end }]])
      db:append(1)
      db.v:get()
      db:close()
    end)
    flume.on_log = saved
    assert(ok, err)
    assert.same({ "v@0: hi" }, lines(got))
  end)

  it("checks the on_log option", function()
    H.raises(function() flume.open(nil, { on_log = "stderr" }) end,
      "EINVAL.*on_log must be a function")
    H.raises(function() flume.open(nil, { on_logs = print }) end,
      "did you mean 'on_log'")
  end)
end)

describe("a read-only handle", function()
  it("runs no map or reduce, so nothing logs there", function()
    local dir = H.tmpdir()
    local wrote = {}
    local w = flume.open(dir .. "/db", { on_log = function(_, _, msg)
      wrote[#wrote + 1] = msg
    end })
    w:use("sum", [[return { version = 1, initial = 0,
      reduce = function(t, v) print("writer", v) return t + v end }]])
    w:append({ 1, 2, 3 }, { batch = true })
    assert.equal(6, w.sum:get())
    w:close()
    assert.same({ "writer\t1", "writer\t2", "writer\t3" }, wrote)
    local got = {}
    local r = flume.open(dir .. "/db", { readonly = true, on_log = function(...)
      got[#got + 1] = { ... }
    end })
    local sum = r:view("sum")
    assert.equal(6, sum:get { wait = false })
    r:close()
    H.rm(dir)
    assert.same({}, got)
  end)
end)
