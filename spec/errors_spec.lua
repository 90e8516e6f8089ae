-- Errors of the Lua API take their names and messages from the core
-- (issue 10): core.errors lists every code the core knows, and every error
-- the Lua side raises itself reads `flume: NAME: <the core's message>:
-- detail`, the format of the errors flume.core raises.
local flume = require "flume"
local H = require "helpers.db"

local core = flume.core

--- Asserts that err is `flume: NAME: <core message>[: detail]` with the
-- name `name`; returns the detail.
local function core_format(err, name)
  err = tostring(err)
  local got, rest = err:match("^flume: (E[%u%d_]+): (.*)$")
  assert(got, "not a flume error: " .. err)
  assert.equal(name, got, err)
  local e = core.errors[name]
  assert(e, "core.errors has no " .. name)
  assert(rest:sub(1, #e.message) == e.message,
    "\"" .. err .. "\" does not have the core's message for " .. name ..
    " (\"" .. e.message .. "\")")
  return rest:sub(#e.message + 3)
end

describe("core.errors", function()
  it("names every code with the core's message", function()
    local n = 0
    for name, e in pairs(core.errors) do
      n = n + 1
      assert.equal(name, e.name)
      assert.equal("integer", math.type(e.code))
      assert.equal("string", type(e.message))
      assert.truthy(#e.message > 0)
    end
    -- flume's own codes and the system's it passes on
    for _, name in ipairs { "EINVAL", "ENOTFOUND", "ECLOSED", "ECANCELED",
      "ELOCKED", "ECODEC", "ECORRUPT", "EFORMAT", "EMAPFULL", "ENOSPC",
      "EIO", "ENOMEM", "ETIMEDOUT", "EENCODE", "EDECODE", "EVIEW", "ELIMIT",
      "EEXIST", "ESCRIPT", "EBUSY", "ENOENT", "EACCES", "EISDIR" } do
      assert.truthy(core.errors[name], name)
    end
    assert.truthy(n > 40)
    -- as the README shows it
    assert.same({ code = -33002, name = "ECLOSED",
      message = "database is closed" }, core.errors.ECLOSED)
  end)

  it("gives a name shared with the system flume's own code", function()
    -- EINVAL and ENOSPC are both flume's and the system's: the core reports
    -- flume's under that name, so the table has flume's
    local ok, err = pcall(flume.open, "")
    assert.is_false(ok)
    core_format(err, "EINVAL")
    assert.equal("storage is full (no space left on device)",
      core.errors.ENOSPC.message)
    assert.truthy(core.errors.EINVAL.code ~= core.errors.ENOENT.code)
  end)

  it("has the messages flume.core raises with", function()
    local db = flume.open()
    db:close()
    -- raised by the binding (C), not by the Lua side
    local ok, err = pcall(core.open, "", "msgpack", true)
    assert.is_false(ok)
    core_format(err, "EINVAL")
    ok, err = pcall(function() return db.since end)
    assert.is_false(ok)
    assert.equal("", core_format(err, "ECLOSED"))
  end)
end)

describe("errors the Lua side raises", function()
  local dir, db
  before_each(function()
    dir = H.tmpdir()
    db = flume.open()
    db:use("g", { version = 1, map = function(v) return v end,
      reduce = function(acc) return (acc or 0) + 1 end })
    db:use("r", { version = 1, initial = 0,
      reduce = function(acc) return acc + 1 end })
  end)
  after_each(function()
    if not db:closed() then db:close() end
    H.rm(dir)
  end)

  -- Each: the call, the error's name, and what its detail starts with.
  local cases = {
    { function() flume.sleep(-1) end, "EINVAL", "sleep takes" },
    { function() flume.sleep(1, 5) end, "EINVAL", "sleep's callback" },
    { function() flume.open { codec = "nope" } end, "EINVAL", "codec must" },
    { function()
      flume.open { codec = { name = "raw", encode = print, decode = print } }
    end, "EINVAL", "a custom codec" },
    { function() flume.open { mapper = 5 } end, "EINVAL", "mapper" },
    { function() db:append("\xc1", { encoded = true }) end, "EINVAL",
      "encoded value 1" },
    -- two values in one, a map cut short, one in a batch after good ones
    { function() db:append("\x01\x02", { encoded = true }) end, "EINVAL",
      "encoded value 1" },
    { function() db:append("\x81\xa1a", { encoded = true }) end, "EINVAL",
      "encoded value 1" },
    { function() db:append({ "\x01", "\xa1a", "\x92\x01" },
      { batch = true, encoded = true }) end, "EINVAL", "encoded value 3" },
    { function() db:append(1, 5) end, "EINVAL", "append's options" },
    { function() db:append(1, {}, 5) end, "EINVAL", "append's callback" },
    { function() db:stream { gt = 1.5 } end, "EINVAL", "option 'gt'" },
    { function() db:stream { limit = -1 } end, "EINVAL", "option 'limit'" },
    { function() db:stream { live = true, reverse = true } end, "EINVAL",
      "a live stream" },
    { function() db:use("not a name", "x") end, "EINVAL", "a view name" },
    { function() db:use("append", "x") end, "EEXIST", "'append'" },
    { function() db:use("x", "a\0b.lua") end, "EINVAL", "a view script path" },
    { function() db:use("x", "no/such/file.lua") end, "ENOENT",
      "cannot read view script no/such/file.lua" },
    { function() db.g:get("a", { timeout = -1 }) end, "EINVAL", "timeout" },
    { function() db.r:get({}, {}, print) end, "EINVAL",
      "a reduce view's get" },
    { function() db.r:read() end, "EINVAL", "a reduce view has no keys" },
    { function() db.g:read { live = true, reverse = true } end, "EINVAL",
      "a live read" },
    { function() db.g:on_progress(5) end, "EINVAL", "on_progress takes" },
    { function() db.g:on_progress(print, -1) end, "EINVAL",
      "on_progress's interval" },
    { function()
      local enc = { name = "j", encode = function() return 5 end,
        decode = function(s) return s end }
      local d = flume.open { codec = enc }
      local ok, err = pcall(d.append, d, 1)
      d:close()
      error(err, 0)
    end, "EENCODE", "the codec's encode returned a number" },
    { function()
      local enc = { name = "j", encode = function(v) return v end,
        decode = function() error("no", 0) end }
      local d = flume.open { codec = enc }
      d:append("x")
      local ok, err = pcall(d.get, d, 0)
      d:close()
      error(err, 0)
    end, "EDECODE", "at seq 0: no" },
    { function()
      db:close()
      db:append(1)
    end, "ECLOSED", nil },
    { function()
      local g = db.g
      db:close()
      g:get("a")
    end, "ECLOSED", nil },
  }
  for i, case in ipairs(cases) do
    it(("%d: %s (%s)"):format(i, case[2], case[3] or "no detail"), function()
      local ok, err = pcall(case[1])
      assert.is_false(ok)
      local detail = core_format(err, case[2])
      if case[3] == nil then
        assert.equal("", detail)
      else
        assert.equal(case[3], detail:sub(1, #case[3]), err)
      end
    end)
  end

  it("names the misuse of the loop EBUSY", function()
    -- these two had no code ("flume: cannot wait here: ..."), unlike every
    -- other error the README describes as `flume: ECODE: message`
    local run_err, wait_err, core_err
    db:append("x", function()
      run_err = select(2, pcall(flume.run))
      core_err = select(2, pcall(core.run, "default"))
      local co = coroutine.create(function() return db:append("y") end)
      wait_err = select(2, coroutine.resume(co))
    end)
    flume.run()
    assert.equal("cannot run the loop from inside a callback",
      core_format(run_err, "EBUSY"))
    assert.equal("cannot wait here",
      core_format(wait_err, "EBUSY"):sub(1, #"cannot wait here"))
    -- the binding's own run, under the Lua side's check, says the same
    assert.equal("cannot run the loop from inside a callback",
      core_format(core_err, "EBUSY"):sub(1, 42))
  end)

  it("names a view script it cannot read by the system's error", function()
    -- a folder named *.lua opens, and fails at the read: this was a Lua
    -- error ("bad argument #4 to 'use'") with a source position
    local folder = dir .. "/view.lua"
    assert(os.execute("mkdir " .. H.q(folder)))
    local ok, err = pcall(db.use, db, "v", folder)
    assert.is_false(ok)
    assert.equal("cannot read view script " .. folder,
      core_format(err, "EISDIR"))
  end)
end)

describe("errors a program branches on", function()
  it("carry their name and code: flume.errors.name, code, is", function()
    local flume = require "flume"
    local ok, err = pcall(flume.open, nil, { readonly = true })
    assert.is_false(ok)
    assert.equal("EINVAL", flume.errors.name(err))
    assert.equal(flume.errors.list.EINVAL.code, flume.errors.code(err))
    assert.is_true(flume.errors.is(err, "EINVAL"))
    assert.is_false(flume.errors.is(err, "EIO"))
    assert.is_nil(flume.errors.name("attempt to index a nil value"))
    assert.is_nil(flume.errors.name({}))
    assert.is_nil(flume.errors.code("flume: ENOSUCHTHING: x"))
    -- every name the core knows, with its number and message
    for name, e in pairs(flume.errors.list) do
      assert.equal(name, e.name)
      assert.equal(name, flume.errors.name("flume: " .. name .. ": " ..
        e.message))
    end
  end)

  it("ready(cb) gives the view's own error, not only the code's", function()
    local flume = require "flume"
    local db = flume.open(nil)
    db:use("bad", [[return { version = 1, initial = 0,
      reduce = function(t, v) error("no " .. v.n) end }]])
    db:append({ n = 7 })
    local got
    db.bad:ready(function(err) got = err end)
    while got == nil do flume.sleep(0.01) end
    assert.equal("EVIEW", flume.errors.name(got))
    assert.matches("view 'bad' failed at seq 0: .*no 7", got)
    db:close()
  end)
end)
