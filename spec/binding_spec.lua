-- The Lua binding's C side (issue 10): every request ends once and lets go
-- of its registry refs, whichever way it ends; one close behind :close(),
-- __gc and __close; the state closing with work still pending; flume.tools
-- reached through require.
local flume = require "flume"
local H = require "helpers.db"
local core = flume.core

--- How many entries the registry holds: a ref never released shows as
-- growth (a released one is reused by the next luaL_ref).
local function registry_size()
  local n = 0
  for _ in pairs(debug.getregistry()) do n = n + 1 end
  return n
end

--- How much the registry grows over n runs of fn, after one to warm up.
local function growth(n, fn)
  fn()
  collectgarbage()
  local before = registry_size()
  for _ = 1, n do fn() end
  return registry_size() - before
end

--- Runs a Lua child on the script text; returns its output and status.
local function child(script, ...)
  local path = os.tmpname()
  H.write(path, script)
  -- The bound only turns a hang into a failure; the script exits at once.
  local p = io.popen("timeout 120 " .. H.lua_command(path, ...) .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  os.remove(path)
  return out, ok and 0 or code
end

--- The since of the database in dir/db, which is then removed.
local function since_then_rm(dir)
  local db = flume.open(dir .. "/db")
  local since = db.since
  db:close()
  H.rm(dir)
  return since
end

for _, backend in ipairs(H.backends) do
  describe("the binding on " .. backend, function()
    local ctx = H.fresh(backend)
    before_each(ctx.setup)
    after_each(ctx.teardown)

    describe("requests let go of their callbacks", function()
      -- Before: a request ended outside core.run (a wait that had nothing
      -- to wait for, a failed use, a stopped watch, a cancelled timer)
      -- kept its callback in the registry for good: every sync view read
      -- at top level leaked one.
      it("when a sync view read at top level needs no wait", function()
        local v = ctx.db:use("n", { version = 1,
          reduce = function(s) return (s or 0) + 1 end })
        ctx.db:append(1)
        assert.equal(0, growth(100, function() assert.equal(1, v:get()) end))
      end)

      it("when a view wait is already reached", function()
        local c = ctx.db._c
        ctx.db:use("n", { version = 1,
          reduce = function(s) return (s or 0) + 1 end })
        assert.equal(0, growth(100, function()
          assert.is_true(c:view_wait("n", -1, nil, function() end))
        end))
      end)

      it("when a use fails before it starts", function()
        local c = ctx.db._c
        assert.equal(0, growth(100, function()
          assert.is_false(pcall(c.use, c, "bad", "return 1", "=bad", nil,
            function() end))
        end))
      end)

      it("when a watch is stopped at top level", function()
        local c = ctx.db._c
        assert.equal(0, growth(100, function()
          c:on_since(function() end):stop()
        end))
      end)

      it("when a timer is cancelled at top level", function()
        assert.equal(0, growth(100, function()
          core.timer(1000, function() end)()
        end))
      end)

      it("when appends complete", function()
        assert.equal(0, growth(100, function()
          ctx.db:append(1, function() end)
          core.run("default")
        end))
      end)
    end)

    describe("requests end once", function()
      it("a timer cancelled inside its own callback", function()
        local calls, cancel = 0, nil
        cancel = core.timer(0, function()
          calls = calls + 1
          cancel()
        end)
        core.run("default")
        cancel()
        assert.equal(1, calls)
      end)

      it("a watch stopped inside its last callback (the close)", function()
        local c = ctx.db._c
        local events, w = {}, nil
        w = c:on_since(function(err)
          events[#events + 1] = err and err:match("^flume: (%u+)") or "ok"
          if err then w:stop() end
        end)
        ctx.db:append(1)
        ctx.db:close()
        core.run("default")
        w:stop()
        assert.same({ "ok", "ECLOSED" }, events)
        ctx.db = nil
      end)
    end)

    describe("the one close", function()
      it("closes the core handle through <close>", function()
        local c = core.open(ctx.dir and (ctx.dir .. "2"), nil, true)
        do
          local h <close> = c
          h:append(false, false, "x")
        end
        assert.is_true(c:closed())
        core.run("default")
        if ctx.dir then H.rm(ctx.dir .. "2") end
      end)

      it("calls the first close's callback once, a second close's never",
        function()
          local c, first, second = ctx.db._c, 0, 0
          c:close(function() first = first + 1 end)
          c:close(function() second = second + 1 end)
          core.run("default")
          assert.same({ 1, 0 }, { first, second })
          ctx.db = nil
        end)

      it("closes inside an append's callback; later appends still answer",
        function()
          local c, answers, closed = ctx.db._c, {}, 0
          for i = 1, 5 do
            c:append(false, false, tostring(i), function(err, seq)
              answers[i] = err or seq
              if i == 1 then c:close(function() closed = closed + 1 end) end
            end)
          end
          core.run("default")
          assert.same({ 0, 1, 2, 3, 4 }, answers)
          assert.equal(1, closed)
          assert.is_true(c:closed())
          ctx.db = nil
        end)

      it("writes the pending appends of a handle collected unclosed",
        function()
          local answers = {}
          do
            local c = core.open(ctx.dir and (ctx.dir .. "2"), nil, true)
            for i = 1, 3 do
              c:append(false, false, tostring(i), function(err, seq)
                answers[i] = err or seq
              end)
            end
          end
          collectgarbage()
          collectgarbage()
          core.run("default")
          assert.same({ 0, 1, 2 }, answers)
          if ctx.dir then
            local c = core.open(ctx.dir .. "2")
            assert.equal(2, c:since())
            c:close()
            core.run("default")
            H.rm(ctx.dir .. "2")
          end
        end)
    end)
  end)
end

describe("the state closing", function()
  it("does not wait for a pending timer", function()
    -- Before: lua_close ran the loop until every timer had fired (their
    -- callbacks could not even run then): forever for math.huge.
    local out, code = child([[
      local flume = require "flume"
      flume.sleep(math.huge, function() end)
      flume.core.timer(3600, function() end)
      print("done")
    ]])
    assert.equal("done\n", out)
    assert.equal(0, code)
  end)

  it("exits from inside a callback with other work pending", function()
    local dir = H.tmpdir()
    local out, code = child([[
      local flume = require "flume"
      local db = flume.open(arg[1] .. "/db")
      flume.sleep(math.huge, function() end)
      flume.core.timer(0, function()
        db:append("last", function() end)
        print("exiting")
        os.exit(3, true)
      end)
      flume.core.run("default")
    ]], dir)
    assert.same({ "exiting\n", 3, 0 }, { out, code, since_then_rm(dir) })
  end)

  it("finishes the appends of a database left open", function()
    local dir = H.tmpdir()
    local out, code = child([[
      local flume = require "flume"
      local db = flume.open(arg[1] .. "/db")
      for i = 1, 10 do db:append(i, function() end) end
      db._c:on_since(function() end)
      print("left")
    ]], dir)
    assert.same({ "left\n", 0, 9 }, { out, code, since_then_rm(dir) })
  end)
end)

describe("the dispatcher", function()
  it("failing itself is reported, and the loop goes on", function()
    local out, code = child([[
      local core = require "flume.core"
      core.set_dispatch(function() error("dispatcher bug", 0) end)
      local c = core.open()
      for i = 1, 2 do c:append(false, false, "x", function() end) end
      core.run("default")
      print("since " .. c:since())
      c:close()
      core.run("default")
    ]])
    local _, failures = out:gsub("flume: dispatcher failed: dispatcher bug",
      "")
    assert.equal(2, failures)
    assert.truthy(out:find("since 1\n", 1, true))
    assert.equal(0, code)
  end)
end)

describe("flume.tools", function()
  it("is reached with require after flume", function()
    local tools = require "flume.tools"
    assert.is_table(tools)
    assert.is_function(tools.isatty)
    assert.equal(tools, require "flume.tools")
    assert.is_function(package.preload["flume.tools"])
  end)
end)
