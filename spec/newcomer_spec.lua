-- What a newcomer met in a first hour with flume: a drop beside a
-- progress subscription, calls that ignored arguments, async forms that
-- raised, errors that were not flume's, nil appended to the log.
local flume = require "flume"
local H = require "helpers.db"

local SUM = [[
-- the sum of the values' n
return { version = 1, initial = 0,
  reduce = function(acc, v) return acc + v.n end }]]

local function ename(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error")
  return flume.errors.name(err), err
end

describe("flume.open", function()
  it("says why an in-memory database cannot be read-only", function()
    local name, err = ename(flume.open, nil, { readonly = true })
    assert.equal("EINVAL", name)
    assert.matches("in%-memory database cannot be read%-only", err)
  end)
end)

for _, backend in ipairs(H.backends) do
  describe("newcomer on " .. backend, function()
    local ctx = H.fresh(backend, { ready = false })
    before_each(ctx.setup)
    after_each(ctx.teardown)

    it("ends an on_progress subscription when its view is dropped",
      function()
        local db = ctx.db
        db:use("sum", SUM)
        db:append({ n = 1 })
        -- the indexer is paused: the view stays behind, the poll goes on
        local heard = 0
        db.sum:on_progress(function() heard = heard + 1 end, 0.001)
        flume.sleep(0.01)
        assert.is_true(heard > 0)
        db:drop("sum")
        local after = heard
        flume.sleep(0.02)
        assert.equal(after, heard)
        assert.is_nil(db.sum)
        assert.equal(0, #db:views())
      end)

    it("says ENOTFOUND for the since of a view object that was dropped",
      function()
        local db = ctx.db
        local v = db:use("sum", SUM)
        db:drop("sum")
        assert.equal("ENOTFOUND", ename(function() return v.since end))
      end)

    describe("db:append", function()
      it("refuses nil, in both forms, and appends nothing", function()
        local db = ctx.db
        assert.equal("EINVAL", ename(db.append, db, nil))
        assert.equal("EINVAL", ename(db.append, db, nil, function() end))
        assert.equal("EINVAL", ename(db.append, db, nil, {}, function() end))
        assert.equal(-1, db.since)
      end)

      it("refuses a batch with a hole, a map or nothing in it", function()
        local db = ctx.db
        for _, batch in ipairs({ { 1, nil, 3 }, { n = 2, 1, 2 },
          { [2] = 1 }, { a = 1 }, {}, "abc" }) do
          local name, err = ename(db.append, db, batch, { batch = true })
          assert.equal("EINVAL", name)
          assert.matches("batch", err)
          assert.not_matches("init.lua", err)
        end
        assert.matches("a batch is a list of values",
          select(2, ename(db.append, db, { a = 1 }, { batch = true })))
        assert.equal(-1, db.since)
        assert.equal(1, db:append({ 1, 2 }, { batch = true }))
      end)
    end)

    describe("async forms", function()
      --- Calls start(cb) and checks that it returns, that cb is not called
      --- inside it, and that it is called once, later, with an error named
      --- `want`.
      local function passes(want, start)
        local got = {}
        start(function(err) got[#got + 1] = err end)
        assert.equal(0, #got)
        flume.sleep(0.05)
        assert.equal(1, #got)
        assert.equal(want, flume.errors.name(got[1]))
      end

      it("pass runtime errors to the callback, later", function()
        local db = ctx.db
        passes("ENOTFOUND", function(cb) db:view("nosuch", cb) end)
        passes("ENOTFOUND", function(cb) db:drop("nosuch", cb) end)
        passes("ESCRIPT", function(cb) db:use("bad", "return 1", cb) end)
        passes("ENOENT", function(cb)
          db:use("nofile", "/nonexistent/flume/view.lua", cb)
        end)
      end)

      it("still raise misuse", function()
        local db = ctx.db
        assert.equal("EINVAL", ename(db.view, db, "not a name", function() end))
        assert.equal("EINVAL", ename(db.append, db, nil, function() end))
        assert.equal("EINVAL", ename(db.stream, db, { gt = 0.5 },
          function() end))
      end)
    end)

    it("calls a live async stream's cb first with the range, even empty",
      function()
      local db, calls = ctx.db, {}
      local stop = db:stream({ live = true }, function(err, list)
        calls[#calls + 1] = err or #list
      end)
      flume.sleep(0.02)
      assert.same({ 0 }, calls) -- an empty range, read: told so
      db:append("a")
      flume.sleep(0.02)
      assert.same({ 0, 1 }, calls)
      stop()
      db:stream({ gt = 5 }, function(err, list)
        calls[#calls + 1] = err or #list
      end)
      flume.sleep(0.02)
      assert.same({ 0, 1, 0 }, calls) -- not live: once, empty
    end)

    describe("db:get", function()
      it("refuses a callback or options: it has no async form", function()
        local db = ctx.db
        db:append(1)
        local called = false
        assert.equal("EINVAL", ename(db.get, db, 0, function()
          called = true
        end))
        assert.equal("EINVAL", ename(db.get, db, 0, { wait = false }))
        assert.equal("EINVAL", ename(db.get, db, 0, nil))
        flume.sleep(0)
        assert.is_false(called)
      end)

      it("says EINVAL for NaN, a string and a negative seq", function()
        local db = ctx.db
        db:append(1)
        for _, seq in ipairs({ 0 / 0, "0", -1, 0.0, math.mininteger }) do
          assert.equal("EINVAL", ename(db.get, db, seq))
        end
        assert.equal("ENOTFOUND", ename(db.get, db, 1))
        assert.equal(1, db:get(0))
      end)

      it("does the same through the slow path (a mapper)", function()
        local db = H.open("memory", { mapper = function(v) return v end })
        db:append(1)
        assert.equal("EINVAL", ename(db.get, db, 0, function() end))
        assert.equal("EINVAL", ename(db.get, db, 0 / 0))
        assert.equal("EINVAL", ename(db.get, db, -1))
        db:close()
      end)
    end)
  end)
end

describe("async forms on a read-only handle", function()
  local dir, w, ro
  before_each(function()
    dir = H.tmpdir()
    w = flume.open(dir .. "/db")
    w:use("v", "return { version = 1, map = function(v) return v end }")
    w:append(1)
    w:close()
    ro = flume.open(dir .. "/db", { readonly = true })
  end)
  after_each(function()
    ro:close()
    H.rm(dir)
  end)

  it("pass EREADONLY and ENOTFOUND to the callback, later", function()
    for _, start in ipairs({
      function(cb) ro:append(1, cb) end,
      function(cb) ro:append({ 1, 2 }, { batch = true }, cb) end,
      function(cb) ro:drop("v", cb) end,
      function(cb) ro:rebuild(cb) end,
    }) do
      local got = {}
      start(function(err) got[#got + 1] = err end)
      assert.equal(0, #got)
      flume.sleep(0.02)
      assert.equal(1, #got)
      assert.equal("EREADONLY", flume.errors.name(got[1]))
    end
    local got = {}
    ro:view("nosuch", function(err) got[#got + 1] = err end)
    assert.equal(0, #got)
    flume.sleep(0.02)
    assert.equal("ENOTFOUND", flume.errors.name(got[1]))
  end)
end)
