-- Torn and corrupted files: a database's data.mdb cut at many offsets, its
-- meta pages with flipped bits, values with flipped bits, zeroed pages,
-- an empty data.mdb and LMDB folders that are not flume's. Every open and
-- every command (status, get, cat, verify) must answer with a clear
-- `flume: E...` error or read an intact prefix: never die of a signal,
-- never give a wrong value. Each opening runs in a child process, so a
-- crash is a failure here, not the end of the run.
--
-- FLUME_CORRUPT_SEED picks the random offsets (printed when a case fails).
local H = require "helpers.db"
local flume = require "flume"

local SEED = tonumber(os.getenv("FLUME_CORRUPT_SEED") or "") or os.time()

local q = H.q

local read, write = H.read, H.write

-- The views the database holds; the child attaches the same scripts.
local TOTAL = [[return { version = 1, initial = 0,
  reduce = function(t, v) return t + v.n end }]]
local BY = [[return { version = 1, map = function(v) return v.k end }]]

-- The child: for each case of its list (a file: "name cut AT", "name flip
-- AT MASK", one a line), writes the damaged copy of the database's
-- data.mdb into its folder, opens it for writing, reads every
-- value (stream and get) and both views, and checks each against what was
-- written. Prints "CASE name" before a case and "OK name", "REFUSED name
-- <error>" or "BAD name <what>" after it. Many cases in one process keep
-- this fast (under ASan too); a crash still shows, as a case with no end.
local CHILD = [[
local flume = require "flume"
local base, work, list, total, by, n = arg[1], arg[2], arg[3], arg[4],
  arg[5], tonumber(arg[6])
local value = load(arg[7])()
local f = assert(io.open(base, "rb"))
local bytes = f:read("a")
f:close()
local sum = 0
for i = 0, n - 1 do sum = sum + value(i).n end
local function check(dir)
  local db = flume.open(dir, { sync = false }) -- fast: no fsync
  local seen = 0
  for seq, v in db:stream() do
    local e = value(seq)
    if v.n ~= e.n or v.s ~= e.s then return "wrong value at seq " .. seq end
    seen = seen + 1
  end
  if seen ~= n then return "read " .. seen .. " values of " .. n end
  for seq = 0, n - 1 do
    if db:get(seq).n ~= value(seq).n then return "wrong get " .. seq end
  end
  db:use("total", total)
  db:use("by", by)
  if db.total:get{ timeout = 5 } ~= sum then return "wrong view state" end
  for key, seq, v in db.by:read{ timeout = 5 } do
    local e = value(seq)
    if e.k ~= key or e.n ~= v.n then return "wrong index entry " .. seq end
  end
  db:close()
end
for line in io.lines(list) do
  local name, kind, a, b = line:match("^(%S+) (%S+) ?(%d*) ?(%d*)")
  a, b = tonumber(a), tonumber(b)
  io.write("CASE ", name, "\n")
  io.flush()
  -- one folder for all: no process started per case
  local dir = work
  os.remove(dir .. "/lock.mdb")
  os.remove(dir .. "/flume.lock")
  local damaged = bytes
  if kind == "cut" then damaged = bytes:sub(1, a)
  elseif kind == "flip" then
    damaged = bytes:sub(1, a - 1) .. string.char(bytes:byte(a) ~ b) ..
      bytes:sub(a + 1)
  end
  f = assert(io.open(dir .. "/data.mdb", "wb"))
  f:write(damaged)
  f:close()
  local ok, bad = pcall(check, dir)
  if not ok then
    io.write("REFUSED ", name, " ", (tostring(bad):gsub("\n", " ")), "\n")
  elseif bad then
    io.write("BAD ", name, " ", bad, "\n")
  else
    io.write("OK ", name, "\n")
  end
  io.flush()
  collectgarbage()
end
io.write("END\n")
]]

local N = 300 -- values in the database
local expected = {} -- seq -> value

-- value i of the database: its source is handed to the child too
local VALUE = [[return function(i)
  -- every 50th value is large: LMDB keeps it on overflow pages
  local len = i % 50 == 0 and 9000 or 20 + i % 37
  return { n = i * 7, k = "k" .. i % 11, s = ("v"):rep(len) }
end]]
local value = load(VALUE)()

local tmp, base, size, child

--- Runs a shell command; returns stdout, stderr and how it ended: the exit
-- code, or "signal N" / a code past 1 for a crash.
local function run(cmd)
  local errpath = tmp .. "/stderr"
  local p = io.popen(cmd .. " 2>" .. q(errpath) .. " </dev/null")
  local out = p:read("a")
  local _, how, code = p:close()
  if how == "signal" then code = "signal " .. code end
  return out, read(errpath) or "", code
end

--- A fresh copy of the database, with `damage(bytes)` applied to its
--- data.mdb (a function returning the new bytes).
local function damaged(name, damage)
  local dir = tmp .. "/" .. name
  os.execute("rm -rf " .. q(dir) .. " && cp -r " .. q(base) .. " " .. q(dir))
  write(dir .. "/data.mdb", damage(read(base .. "/data.mdb")))
  return dir
end

local function ended_well(code, err, what)
  assert(code == 0 or code == 1, what .. ": ended with " .. tostring(code) ..
    " (seed " .. SEED .. "): " .. err)
  if code == 1 then
    assert(err:match("^flume: E%u+: [^\n]+\n?$"), what ..
      ": not one clear error line: " .. err)
  end
end

--- Runs the child over `cases` (a list of { name, kind, a, b }) and
-- checks that every case ended (no crash) with right values or a clear
-- error. Returns results[name] = nil (read everything) or the error.
local function run_cases(cases)
  local list = tmp .. "/cases"
  local lines = {}
  for i, c in ipairs(cases) do
    lines[i] = table.concat({ c[1], c[2], c[3] or "", c[4] or "" }, " ")
  end
  write(list, table.concat(lines, "\n") .. "\n")
  os.execute("mkdir -p " .. q(tmp .. "/cases.d"))
  local out, err, code = run(H.lua .. " " .. q(child) .. " " ..
    q(base .. "/data.mdb") .. " " .. q(tmp .. "/cases.d") .. " " ..
    q(list) .. " " .. q(TOTAL) .. " " .. q(BY) .. " " .. N .. " " ..
    q(VALUE))
  local results, current, done = {}, nil, 0
  for line in out:gmatch("[^\n]+") do
    local tag, name, rest = line:match("^(%u+) ?(%S*) ?(.*)$")
    if tag == "CASE" then current = name
    elseif tag == "OK" or tag == "REFUSED" then
      assert(name == current, line)
      assert(tag == "OK" or rest:match("^flume: E%u+: "),
        name .. ": unclear error: " .. rest)
      results[name] = tag == "REFUSED" and rest or nil
      done, current = done + 1, nil
    elseif tag == "BAD" then
      error(name .. ": " .. rest .. " (seed " .. SEED .. ")")
    end
  end
  assert(current == nil and code == 0 and out:find("END\n$"),
    "the child ended with " .. tostring(code) .. " in case " ..
    tostring(current) .. " (seed " .. SEED .. "): " .. err)
  assert.equal(#cases, done)
  return results
end

--- Opens dir (a damaged copy made by `damaged`) in the child: its error,
-- or nil when it read everything right.
local function check_open(dir, what)
  local f = assert(io.open(dir .. "/data.mdb", "rb"))
  local bytes = f:read("a")
  f:close()
  -- the child damages base itself: give it this file as a case of its own
  local saved = base
  base = dir
  local ok, r = pcall(run_cases, { { "one", "none" } })
  base = saved
  if not ok then error(what .. ": " .. tostring(r), 0) end
  assert(bytes) -- the file was there
  return r.one
end

local flume_cmd = H.flume_command

--- Every command on dir: a clear error or right answers.
local function check_commands(dir, what)
  local out, err, code = run(flume_cmd { "status", dir })
  ended_well(code, err, what .. ", status")
  out, err, code = run(flume_cmd { "get", dir, "5" })
  ended_well(code, err, what .. ", get")
  if code == 0 then
    assert(out:find('"n":35'), what .. ", get: wrong value: " .. out)
  end
  out, err, code = run(flume_cmd { "cat", dir })
  ended_well(code, err, what .. ", cat")
  local cjson = require "cjson"
  for line in out:gmatch("[^\n]+") do
    local e = cjson.decode(line)
    local v = expected[e.seq]
    assert(v and v.n == e.value.n and v.s == e.value.s,
      what .. ", cat: wrong value at seq " .. tostring(e.seq))
  end
  out, err, code = run(flume_cmd { "verify", dir })
  ended_well(code, err, what .. ", verify")
  return out, err, code
end

setup(function()
  tmp = H.tmpdir()
  base = tmp .. "/base"
  child = tmp .. "/child.lua"
  write(child, CHILD)
  local db = flume.open(base)
  for i = 0, N - 1 do
    expected[i] = value(i)
    db:append(expected[i])
  end
  db:use("total", TOTAL)
  db:use("by", BY)
  db.total:get()
  db.by:get("k1")
  db:close()
  size = #read(base .. "/data.mdb")
end)

teardown(function() H.rm(tmp) end)

describe("a database file", function()
  it("reads back whole when undamaged (the checks' control)", function()
    assert.is_nil(check_open(base, "intact"))
    local out, err, code = check_commands(base, "intact")
    assert.equal(0, code, err)
    assert.truthy(out:find("ok"), out)
  end)

  it("cut at any offset is ECORRUPT naming data.mdb, never SIGBUS",
    function()
      math.randomseed(SEED)
      local offsets = { 0, 1, 100, 4095, 4096, 4097, 8191, 8192, 8193,
        12288, size // 4, size // 2, size - 4096, size - 1 }
      for _ = 1, 16 do offsets[#offsets + 1] = math.random(1, size - 1) end
      local cases = {}
      for i, at in ipairs(offsets) do cases[i] = { "cut" .. at, "cut", at } end
      local results = run_cases(cases)
      for _, at in ipairs(offsets) do
        local e = results["cut" .. at]
        assert(e and e:find("ECORRUPT") and e:find("data.mdb"),
          "cut at " .. at .. " of " .. size .. ": " .. tostring(e))
      end
      -- the commands, on a few of them
      for _, at in ipairs { 0, 4097, size // 2, size - 1 } do
        local what = "cut at " .. at .. " of " .. size
        local dir = damaged("cut", function(b) return b:sub(1, at) end)
        local _, err, code = check_commands(dir, what)
        assert.equal(1, code, what)
        assert(err:find("ECORRUPT") and err:find("data.mdb"), what .. err)
      end
    end)

  it("with flipped bits in its meta pages: a clear error or right values",
    function()
      local psize = 4096
      local bytes = read(base .. "/data.mdb")
      local t0 = string.unpack("<I8", bytes, 144 + 1)
      local t1 = string.unpack("<I8", bytes, psize + 144 + 1)
      local newer = t1 > t0 and 1 or 0
      local cases = {}
      for page = 0, 1 do
        -- a bit of every byte of the meta LMDB uses, and of every 4th of
        -- the other (FLUME_SOAK=1: every bit of both)
        local soak = os.getenv("FLUME_SOAK") == "1"
        for off = 0, 151, (page == newer or soak) and 1 or 4 do
          for bit = 0, soak and 7 or 0 do
            local at = page * psize + off + 1
            cases[#cases + 1] = { ("meta%d.%d.%d"):format(page, off, bit),
              "flip", at, 1 << ((off + bit) % 8) }
          end
        end
      end
      local results = run_cases(cases)
      local opened, refused = 0, 0
      for _, c in ipairs(cases) do
        if results[c[1]] then refused = refused + 1
        else opened = opened + 1 end
      end
      -- both happen: unused bytes are harmless, the rest is refused
      assert.truthy(opened > 0 and refused > 0, opened .. "/" .. refused)
      -- the commands, on a few of them
      for _, c in ipairs { cases[1], cases[#cases // 2], cases[#cases] } do
        local dir = damaged("meta", function(b)
          return b:sub(1, c[3] - 1) .. string.char(b:byte(c[3]) ~ c[4]) ..
            b:sub(c[3] + 1)
        end)
        check_commands(dir, c[1])
      end
    end)

  it("with a flipped bit in a value gives ECORRUPT naming its seq",
    function()
      local bytes = read(base .. "/data.mdb")
      -- the value at seq 123 is the only one with s of 20 + 123 % 37 = 32
      -- "v"s, 7 * 123 = 861 as n, and k = "k2": find its msgpack bytes
      local mark = "\xa1s\xd9\x20" .. ("v"):rep(32)
      assert.truthy(bytes:find(mark, 1, true), "value not found")
      -- LMDB copies pages on write: flip the bit in every copy, so in the
      -- one in use
      local dir = damaged("value", function(b)
        return (b:gsub(mark, function(m)
          return m:sub(1, 9) .. string.char(m:byte(10) ~ 4) .. m:sub(11)
        end))
      end)
      local e = check_open(dir, "value flipped")
      assert(e and e:find("ECORRUPT: .*seq %d+ in .*data.mdb is damaged"),
        tostring(e))
      local seq = tonumber(e:match("seq (%d+)"))
      local out, err, code = run(flume_cmd { "get", dir, tostring(seq) })
      assert.equal(1, code, out)
      assert.truthy(err:find("^flume: ECORRUPT: .*seq " .. seq), err)
      out, err, code = check_commands(dir, "value flipped")
      assert.equal(1, code, out)
      assert.truthy(out:find("seq " .. seq .. " in .*damaged"), out)
    end)

  it("with a flipped bit in a view's state gives ECORRUPT naming the view",
    function()
      local dir = tmp .. "/state"
      local view = [[return { version = 1,
        initial = { sum = 0, mark = "ZZZZZZZZ" },
        reduce = function(t, v) t.sum = t.sum + v.n; return t end }]]
      local db = flume.open(dir)
      for i = 1, 20 do db:append({ n = i }) end
      db:use("tot", view)
      assert.equal(210, db.tot:get().sum)
      db:close()
      local bytes = read(dir .. "/data.mdb")
      write(dir .. "/data.mdb", (bytes:gsub("ZZZZZZZZ", "ZZZZZZZY")))
      local script = tmp .. "/state.lua"
      write(script, [[
        local flume = require "flume"
        local db = flume.open(arg[1])
        local ok, err = pcall(db.use, db, "tot", arg[2])
        if ok then ok, err = pcall(function() return db.tot:get().sum end) end
        print(ok, err)
        os.exit(ok and 0 or 1)]])
      local out, err, code = run(H.lua .. " " .. q(script) .. " " .. q(dir) ..
        " " .. q(view))
      assert.equal(1, code, out .. err)
      assert.truthy(out:find("flume: ECORRUPT: .*view 'tot' state .*" ..
        "damaged"), out)
      out, err, code = run(flume_cmd { "verify", dir })
      assert.equal(1, code)
      assert.truthy(out:find("^damaged: view 'tot' state "), out)
      assert.truthy(err:find("^flume: ECORRUPT: [^:]*: verify: .* has 1 " ..
        "damaged " ..
        "place\n$"), err)
    end)

  it("with a zeroed page: verify reports it, never dies", function()
    local pages = size // 4096
    for _, pg in ipairs { 2, 3, pages // 2, pages - 2, pages - 1 } do
      local what = "page " .. pg .. " zeroed"
      local dir = damaged("zero" .. pg, function(b)
        return b:sub(1, pg * 4096) .. ("\0"):rep(4096) ..
          b:sub((pg + 1) * 4096 + 1)
      end)
      local out, err, code = run(flume_cmd { "verify", dir })
      ended_well(code, err, what .. ", verify")
      if code == 0 then
        -- a page no longer in use: everything must then read back right
        assert.is_nil(check_open(dir, what), what)
      else
        assert.truthy((out .. err):find("damaged"), out .. err)
      end
    end
  end)

  it("that is empty (0 bytes) is refused, not made a new database",
    function()
      local dir = damaged("empty", function() return "" end)
      local e = check_open(dir, "empty")
      assert(e and e:find("ECORRUPT") and e:find("empty"), tostring(e))
      assert.equal(0, #read(dir .. "/data.mdb"))
      local _, err, code = run(flume_cmd { "status", dir })
      assert.equal(1, code)
      assert.truthy(err:find("ECORRUPT"), err)
    end)
end)

describe("an LMDB folder that is not flume's", function()
  it("is refused, and left as it was", function()
    -- an LMDB environment with a named table of someone else's: made with
    -- flume's own open, then renamed inside, would need LMDB here; the
    -- command's backup of a flume database with its tables renamed is
    -- simpler: rewrite the names "t:meta"/"log" in the file's main table.
    local dir = damaged("foreign", function(b)
      return (b:gsub("t:meta", "x:meta"))
    end)
    local before = read(dir .. "/data.mdb")
    local e = check_open(dir, "foreign")
    assert(e and e:find("ECORRUPT") and e:find("not a flume database"),
      tostring(e))
    assert.equal(before, read(dir .. "/data.mdb"))
    local _, err, code = run(flume_cmd { "status", dir })
    assert.equal(1, code)
    assert.truthy(err:find("not a flume database"), err)
  end)
end)
