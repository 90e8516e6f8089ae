-- The indexer feeds a view a slice of values in one protected call (a run,
-- runtime/views/pipeline.c), not one protected call per script call. What
-- a script call may do and how a failure in the middle of a slice shows
-- must not change with it: each call gets the instruction budget a call of
-- its own gets (a view method's, made alone), to the instruction, and a
-- failure is the value's, with nothing of the values after it done.
local flume = require "flume"
local H = require "spec.helpers.db"

--- The largest n for which call(n) succeeds: call(0) does, call(hi) not.
local function largest(call, hi)
  local lo = 0
  while hi - lo > 1 do
    local mid = (lo + hi) // 2
    if pcall(call, mid) then lo = mid else hi = mid end
  end
  return lo
end

--- Burns the budget: n turns of an empty loop, then the rest (the
-- functions below differ from the methods that measure them only in the
-- register their value is in).
local LIMIT = 10000000 -- FLUME__INSTRUCTION_LIMIT: a turn is one or more

describe("a script call in a run", function()
  local db
  after_each(function() if db then db:close() end db = nil end)

  --- Measures with `probe` (a sync method of view `name`, the same code as
  -- the view's function under test) the largest n a call can burn, then
  -- appends values {n = it} and {n = it + 1} in one batch (one slice): the
  -- first must pass and the second fail on the limit, at seq 1.
  local function check(name, src, read)
    db = flume.open()
    db:use(name, src)
    local n = largest(function(k) db[name]:probe { n = k } end, LIMIT)
    assert.is_true(n > 1000)
    db:append({ { n = n }, { n = n + 1 } }, { batch = true })
    H.raises(function() read(db[name]) end,
      "failed at seq 1: .*instruction limit exceeded")
  end

  it("of a reduce gets exactly a method call's budget", function()
    check("r", [[
      local function burn(s, v) for i = 1, v.n do end return s end
      return { version = 1, initial = 0, reduce = burn,
        methods = { probe = { "sync", burn } } }]],
      function(v) return v:get() end)
  end)

  it("of a reduce's map gets exactly a method call's budget", function()
    check("rm", [[
      local function burn(s, v) for i = 1, v.n do end return s end
      return { version = 1, initial = 0,
        map = function(v, seq) for i = 1, v.n do end return v end,
        reduce = function(s) return s end,
        methods = { probe = { "sync", burn } } }]],
      function(v) return v:get() end)
  end)

  it("of a group's map gets exactly a method call's budget", function()
    check("gm", [[return { version = 1,
      map = function(v, s) for i = 1, v.n do end return "k", 1 end,
      reduce = function(a, n) return (a or 0) + n end,
      methods = { probe = { "sync",
        function(h, v) for i = 1, v.n do end return "k", 1 end } } }]],
      function(v) return v:get("k") end)
  end)

  it("of a group's reduce gets exactly a method call's budget", function()
    check("gr", [[return { version = 1,
      map = function(v, s) return "k", v end,
      reduce = function(a, v) for i = 1, v.n do end return 1 end,
      methods = { probe = { "sync",
        function(h, v) for i = 1, v.n do end return 1 end } } }]],
      function(v) return v:get("k") end)
  end)

  it("of an index's map gets exactly a method call's budget", function()
    check("ix", [[return { version = 1,
      map = function(v, s) for i = 1, v.n do end return "k" end,
      methods = { probe = { "sync",
        function(h, v) for i = 1, v.n do end return "k" end } } }]],
      function(v) return v:get("k") end)
  end)

  it("names a C function given as reduce as a call of its own does",
    function()
    db = flume.open()
    db:use("f", [[return { version = 1, initial = {}, reduce = math.floor,
      methods = { probe = { "sync", math.floor } } }]])
    local alone = H.raises(function() db.f:probe(1) end, "bad argument")
    db:append({ 1 }, { batch = true })
    local err = H.raises(function() db.f:get() end, "failed at seq 0: ")
    local want = alone:match("(bad argument.*)$")
    assert.equal(want, err:match("(bad argument.*)$"))
  end)
end)

describe("a failure in the middle of a slice", function()
  --- Ten values in one batch (one slice) to view `name` of `src`; returns
  -- the error a read raises and the messages the view printed, as
  -- "seq:msg".
  local function run(name, src, read)
    local got = {}
    local db = flume.open(nil, { on_log = function(view, seq, msg)
      got[#got + 1] = seq .. ":" .. msg
    end })
    db:use(name, src)
    local vals = {}
    for i = 0, 9 do vals[#vals + 1] = { i = i } end
    db:append(vals, { batch = true })
    local err = H.raises(function() read(db[name]) end, "failed")
    db:close()
    return err, table.concat(got, " ")
  end

  it("fails a group view at the value whose reduce failed, after the " ..
     "values before it only", function()
    local err, log = run("g", [[return { version = 1,
      map = function(v, seq) print("m") return "k", v.i end,
      reduce = function(a, i, k, seq) print("r")
        if i == 5 then error("boom") end return (a or 0) + i end }]],
      function(v) return v:get("k") end)
    assert.truthy(err:find("view 'g' failed at seq 5: .*boom"), err)
    assert.equal("0:m 0:r 1:m 1:r 2:m 2:r 3:m 3:r 4:m 4:r 5:m 5:r", log)
  end)

  it("fails a reduce view at the value whose map failed", function()
    local err, log = run("r", [[return { version = 1, initial = 0,
      map = function(v, seq) print("m")
        if v.i == 4 then error("boom") end return v.i end,
      reduce = function(s, i) print("r") return s + i end }]],
      function(v) return v:get() end)
    assert.truthy(err:find("view 'r' failed at seq 4: .*boom"), err)
    assert.equal("0:m 0:r 1:m 1:r 2:m 2:r 3:m 3:r 4:m", log)
  end)

  it("fails an index view at the value whose key is bad, not at the " ..
     "script", function()
    local err, log = run("x", [[return { version = 1,
      map = function(v, seq) print("m")
        if v.i == 3 then return { "a", 0/0 } end return "a" end }]],
      function(v) return v:get("a") end)
    assert.truthy(err:find("view 'x' failed at seq 3: map returned a bad " ..
      "key", 1, true), err)
    assert.equal("0:m 1:m 2:m 3:m", log)
  end)

  it("fails a group view at the value whose key is bad", function()
    local err, log = run("gk", [[return { version = 1,
      map = function(v, seq) print("m")
        if v.i == 6 then return 0/0, 1 end return "k", 1 end,
      reduce = function(a, n) print("r") return (a or 0) + n end }]],
      function(v) return v:get("k") end)
    assert.truthy(err:find("view 'gk' failed at seq 6: map returned a bad " ..
      "key", 1, true), err)
    assert.equal("0:m 0:r 1:m 1:r 2:m 2:r 3:m 3:r 4:m 4:r 5:m 5:r 6:m", log)
  end)

  it("fails a reduce view at the value that ran out of instructions",
    function()
    local err, log = run("l", [[return { version = 1, initial = 0,
      reduce = function(s, v) print("r")
        if v.i == 7 then while true do end end return s + 1 end }]],
      function(v) return v:get() end)
    assert.truthy(err:find("view 'l' failed at seq 7: .*instruction limit " ..
      "exceeded"), err)
    assert.equal("0:r 1:r 2:r 3:r 4:r 5:r 6:r 7:r", log)
  end)
end)

describe("an index view's keys", function()
  it("are encoded as each value's own: 3 and 3.0 stay two keys, and a " ..
     "key stays itself across checkpoints", function()
    local db = flume.open()
    db:use("ix", "return { version = 1, map = function(v) return v.k end }")
    local vals = {}
    for i = 1, 40 do
      vals[#vals + 1] = { k = (i % 4 == 0) and 3.0 or (i % 4 == 1) and 3 or
        (i % 4 == 2) and "a" or true }
    end
    db:append(vals, { batch = true })
    local function count(k)
      local n = 0
      for _ in db.ix:read { gte = k, lte = k } do n = n + 1 end
      return n
    end
    local before = { count(3), count(3.0), count("a"), count(true) }
    db:append(vals, { batch = true })
    assert.same({ 10, 10, 10, 10 }, before)
    assert.same({ 20, 20, 20, 20 }, { count(3), count(3.0), count("a"),
      count(true) })
    for k, seq, v in db.ix:read {} do
      assert.equal(math.type(v.k), math.type(k))
      assert.equal(v.k, k)
    end
    db:close()
  end)
end)
