-- Read-only handles (flume.open(dir, { readonly = true })): they read a
-- database beside its writer in another process, or with none; they never
-- take the lock and never write; live streams follow the writer's commits
-- with no gap and no duplicate, across a writer killed with kill -9 and a
-- new one taking over.
local flume = require "flume"
local H = require "spec.helpers.db"
local C = require "spec.helpers.crash"

-- A writer child: appends {i = i} for i = from..to, in batches of `batch`
-- (from 0: on from the end of its log, so that seq s holds {i = s + 1}).
local WRITER = [[
local flume = require "flume"
local dir, from, to, batch = arg[1], tonumber(arg[2]), tonumber(arg[3]),
  tonumber(arg[4])
local db = flume.open(dir, { codec = "msgpack" })
if from == 0 then from = db.since + 2 end
local i = from
while i <= to do
  local vals = {}
  for k = i, math.min(i + batch - 1, to) do vals[#vals + 1] = { i = k } end
  db:append(vals, { batch = true })
  i = i + batch
end
db:close()
]]

-- A database holding {i = 1} at seq 0, its writer gone.
local function make_db(dir)
  local w = flume.open(dir, { codec = "msgpack" })
  w:append({ i = 1 })
  w:close()
end

-- Starts the writer in the background; returns its pid.
local function start_writer(tmp, dir, from, to, batch)
  local script = tmp .. "/writer.lua"
  H.write(script, WRITER)
  local p = io.popen(H.lua_command(script, dir, from, to, batch) ..
    " >/dev/null 2>&1 & echo $!")
  local pid = tonumber(p:read("l"))
  p:close()
  return pid
end

-- Reads a live stream of db from seq `from` until seq `upto` or the
-- deadline; checks order (each seq the next, each value {i = seq + 1}).
local function follow(db, from, upto, seconds)
  local got, last = 0, from - 1
  local deadline = os.time() + seconds
  local stop
  local done = false
  stop = db:stream({ gte = from, live = true }, function(err, entries)
    assert(err == nil, err)
    for _, e in ipairs(entries) do
      assert(e.seq == last + 1, ("seq %d after %d"):format(e.seq, last))
      assert(e.value.i == e.seq + 1, ("seq %d holds %s"):format(e.seq,
        tostring(e.value.i)))
      last, got = e.seq, got + 1
    end
    if last >= upto and not done then done = true; stop() end
  end)
  while not done and os.time() <= deadline do flume.sleep(0.01) end
  if not done then stop() end
  return got, last
end

describe("a read-only handle", function()
  local tmp, dir
  before_each(function()
    tmp = H.tmpdir()
    dir = tmp .. "/db"
  end)
  after_each(function() H.rm(tmp) end)

  it("reads a database with no writer, and never writes", function()
    local w = flume.open(dir, { codec = "msgpack" })
    w:append({ { i = 1 }, { i = 2 } }, { batch = true })
    w:close()
    local r = flume.open(dir, { readonly = true })
    assert.equal(1, r.since)
    assert.equal("msgpack", r.codec)
    assert.is_true(r.readonly)
    assert.same({ i = 2 }, r:get(1))
    local seen = {}
    for seq, v in r:stream() do seen[#seen + 1] = v.i end
    assert.same({ 1, 2 }, seen)
    H.raises(function() r:append({ i = 3 }) end,
      "^flume: EREADONLY: database is open read%-only$")
    -- it mounts the views a writer attached, and this database has none
    H.raises(function() r:use("v", "views-lua/examples/by_author.lua") end,
      "^flume: ENOTFOUND: .*the database has no such view")
    H.raises(function() r:view("v") end,
      "^flume: ENOTFOUND: .*no stored script for a view named 'v'")
    H.raises(function() r:drop("v") end,
      "^flume: EREADONLY: .*cannot drop views")
    H.raises(function() r:rebuild() end, "^flume: EREADONLY: ")
    -- a writer (in another process: LMDB forbids one process two handles
    -- on a folder) opens beside the reader, which took no lock
    local pid = start_writer(tmp, dir, 3, 3, 1)
    while C.alive(pid) do flume.sleep(0.01) end
    assert.equal(2, r.since)
    assert.same({ i = 3 }, r:get(2))
    r:close()
  end)

  it("lets the loop end once its last live stream is stopped", function()
    -- a watch stopped inside its own notification left the poll holding
    -- the loop: flume.run() never returned
    make_db(dir)
    local script = tmp .. "/reader.lua"
    H.write(script, [=[
local flume = require "flume"
local r = flume.open(arg[1], { readonly = true })
local stop
stop = r:stream({ gt = 0, live = true }, function(err, entries)
  assert(err == nil)
  if #entries > 0 then stop() end -- inside the poll's notification
end)
os.execute(arg[2] .. " &") -- a writer appends after the stream waits
flume.run()
r:close()
print("returned")
]=])
    H.write(tmp .. "/writer.lua", WRITER)
    local writer = H.lua_command(tmp .. "/writer.lua", dir, 2, 2, 1) ..
      " >/dev/null 2>&1"
    local p = io.popen("timeout 20 " .. H.lua_command(script, dir, writer) ..
      " 2>&1")
    local out = p:read("a")
    local ok = p:close()
    assert.is_true(ok, out) -- timeout's 124 when the loop never ends
    assert.equal("returned\n", out)
  end)

  it("refuses what it cannot read", function()
    H.raises(function() flume.open(dir, { readonly = true }) end,
      "^flume: ENOTFOUND: ")
    -- it created nothing
    assert.is_nil(io.open(dir .. "/data.mdb"))
    H.raises(function() flume.open(nil, { readonly = true }) end,
      "^flume: EINVAL: ")
    H.raises(function() flume.open(dir, { readonly = 1 }) end,
      "^flume: EINVAL: .*readonly must be a boolean")
  end)

  it("follows a writer in another process: every value once, in order",
     function()
    make_db(dir)
    local r = flume.open(dir, { readonly = true })
    local pid = start_writer(tmp, dir, 2, 3000, 7)
    local got, last = follow(r, 0, 2999, 60)
    assert.equal(3000, got)
    assert.equal(2999, last)
    r:close()
    assert.is_truthy(pid)
  end)

  it("serves four reader processes at once, each every value once, in " ..
     "order", function()
    make_db(dir)
    local script = tmp .. "/follower.lua"
    H.write(script, [=[
local flume = require "flume"
local r = flume.open(arg[1], { readonly = true })
local upto, n, last = tonumber(arg[2]), 0, -1
for seq, v in r:stream({ live = true }) do
  assert(seq == last + 1, ("seq %d after %d"):format(seq, last))
  assert(v.i == seq + 1, ("seq %d holds %s"):format(seq, tostring(v.i)))
  n, last = n + 1, seq
  if seq == upto then break end
end
r:close()
print(n, last)
]=])
    local readers = {}
    for k = 1, 4 do
      readers[k] = io.popen("timeout 60 " .. H.lua_command(script, dir,
        4999) .. " 2>&1")
    end
    start_writer(tmp, dir, 2, 5000, 3)
    for k = 1, 4 do
      local out = readers[k]:read("a")
      local ok = readers[k]:close()
      assert.is_true(ok, "reader " .. k .. ": " .. out)
      assert.equal("5000\t4999\n", out, "reader " .. k)
    end
  end)

  it("keeps serving across a writer killed with kill -9, and follows the " ..
     "next one", function()
    make_db(dir)
    local r = flume.open(dir, { readonly = true })
    local pid = start_writer(tmp, dir, 2, 200000, 50)
    -- let it write a while, then kill it mid-append
    local t = os.time()
    while r.since < 2000 and os.time() - t < 30 do
      flume.sleep(0.01)
      r:get(0) -- a read looks for commits
    end
    os.execute("kill -9 " .. pid)
    while C.alive(pid) do flume.sleep(0.01) end
    local committed = r:get(0) and r.since
    assert.is_true(committed >= 2000, "the writer wrote " .. committed)
    -- what was committed is all there, in order
    local n = 0
    for seq, v in r:stream() do
      assert.equal(seq + 1, v.i)
      n = n + 1
    end
    assert.equal(committed + 1, n)
    -- a new writer resumes where the log ends (a commit the reader has
    -- not seen yet is possible: LMDB publishes a commit to readers just
    -- after it is on disk); the reader follows it to the end
    local upto = committed + 1000
    start_writer(tmp, dir, 0, upto + 1, 10)
    local got, last = follow(r, committed + 1, upto, 60)
    assert.equal(upto, last)
    assert.equal(upto - committed, got)
    r:close()
  end)
end)
