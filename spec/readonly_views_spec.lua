-- Views on read-only handles, and the view catalogue.
--
-- A reader process mounts the views a writer process attached, by name
-- (the database stores their scripts), and its gated reads wait for the
-- writer's checkpoints; with no writer bringing a view up, a read that
-- would wait fails at once (ENOWRITER) with where the view and the log
-- are. The oracle: seq s holds {i = s + 1}, so each view's state at any
-- since has a closed form, and a read must equal it at a since between
-- the log's since at the call and the view's since after it.
local flume = require "flume"
local H = require "spec.helpers.db"
local C = require "spec.helpers.crash"

local SUM = [[return { version = 1, initial = 0,
  reduce = function(t, v) return t + v.i end,
  methods = { double = { "async", function(t) return 2 * t end } } }]]
local MOD = [[return { version = 1, map = function(v) return v.i % 5 end,
  reduce = function(n, v) return (n or 0) + 1 end }]]
local IDX = [[return { version = 1,
  map = function(v) if v.i % 7 == 0 then return v.i % 3 end end }]]

-- The oracle and the checks, shared with the reader processes (as text).
local CHECKS = [=[
local M = {}
-- The sum view holds n (n + 1) / 2 after n values: which n, or nil.
function M.n_of_sum(sum)
  local n = math.floor((math.sqrt(8 * sum + 1) - 1) / 2 + 0.5)
  if n * (n + 1) // 2 == sum then return n end
end
-- Checks the three views of db against the oracle: each read equals the
-- views' state at a since in [before, after]. Returns nil or what is wrong.
function M.check(db, wait)
  local opts = { wait = wait, timeout = 30 }
  local before = wait and db.since or -1
  local sum = db.sum:get(opts)
  local after = db.sum.since
  local n = M.n_of_sum(sum)
  if not n or n - 1 < before or n - 1 > after then
    return ("sum %s is no state in [%d, %d]"):format(sum, before, after)
  end
  local counts, total = {}, 0
  for key, c in db.mod:read(opts) do counts[key] = c; total = total + c end
  after = db.mod.since
  if total - 1 < before or total - 1 > after then
    return ("mod holds %d values, not in [%d, %d]"):format(total, before,
      after)
  end
  for r = 0, 4 do
    local want = total // 5 + ((r >= 1 and r <= total % 5) and 1 or 0)
    if (counts[r] or 0) ~= want then
      return ("mod[%d] = %s after %d values"):format(r, counts[r], total)
    end
  end
  local seen, last = {}, nil
  for key, seq in db.idx:read(opts) do
    local i = seq + 1
    if i % 7 ~= 0 or i % 3 ~= key then
      return ("idx: seq %d under key %s"):format(seq, key)
    end
    seen[seq] = true
    last = math.max(last or -1, seq)
  end
  after = db.idx.since
  for s = 6, math.max(before, last or -1), 7 do
    if not seen[s] then return ("idx lacks seq %d"):format(s) end
  end
  if last and last > after then
    return ("idx has seq %d past its since %d"):format(last, after)
  end
end
return M
]=]
local checks = load(CHECKS)()

-- A writer child: attaches the views (from their files, or by name with
-- "stored"), appends {i = i} up to `to` (on from its log's end) in batches
-- of `batch`, waits for its views, then holds the folder `hold` seconds.
local WRITER = [[
local flume = require "flume"
local dir, to, batch, views, hold = arg[1], tonumber(arg[2]),
  tonumber(arg[3]), arg[4], tonumber(arg[5])
local db = flume.open(dir, { codec = "msgpack" })
local names = { "sum", "mod", "idx" }
if views == "stored" then
  for _, n in ipairs(names) do db:view(n) end
elseif views ~= "none" then
  for _, n in ipairs(names) do db:use(n, views .. "/" .. n .. ".lua") end
end
local i = db.since + 2
while i <= to do
  local vals = {}
  for k = i, math.min(i + batch - 1, to) do vals[#vals + 1] = { i = k } end
  db:append(vals, { batch = true })
  i = i + batch
end
if views ~= "none" then for _, n in ipairs(names) do db[n]:ready() end end
if hold > 0 then flume.sleep(hold) end
db:close()
]]

describe("views on a read-only handle", function()
  local tmp, dir
  before_each(function()
    tmp = H.tmpdir()
    dir = tmp .. "/db"
    H.write(tmp .. "/sum.lua", SUM)
    H.write(tmp .. "/mod.lua", MOD)
    H.write(tmp .. "/idx.lua", IDX)
    H.write(tmp .. "/writer.lua", WRITER)
    H.write(tmp .. "/checks.lua", CHECKS)
  end)
  after_each(function() H.rm(tmp) end)

  -- A database whose writer attached the views and wrote `n` values.
  local function seed(n)
    local w = flume.open(dir, { codec = "msgpack" })
    for _, name in ipairs { "sum", "mod", "idx" } do
      w:use(name, tmp .. "/" .. name .. ".lua")
    end
    local vals = {}
    for i = 1, n do vals[i] = { i = i } end
    w:append(vals, { batch = true })
    w.sum:ready(); w.mod:ready(); w.idx:ready()
    w:close()
  end

  local function writer(to, batch, views, hold, wait)
    local cmd = H.lua_command(tmp .. "/writer.lua", dir, to, batch, views,
      hold or 0) .. " >" .. tmp .. "/writer.out 2>&1"
    if wait then return os.execute(cmd) end
    local p = io.popen(cmd .. " & echo $!")
    local pid = tonumber(p:read("l"))
    p:close()
    return pid
  end

  it("four reader processes read the writer's views while it appends, " ..
     "each read equal to the oracle at its since", function()
    seed(10)
    local script = tmp .. "/reader.lua"
    H.write(script, [=[
local flume = require "flume"
local checks = dofile(arg[3])
local r = flume.open(arg[1], { readonly = true })
for _, n in ipairs { "sum", "mod", "idx" } do r:view(n) end
local upto, n, last, reads = tonumber(arg[2]), 0, -1, 0
for seq, v in r:stream({ live = true }) do
  assert(seq == last + 1 and v.i == seq + 1)
  n, last = n + 1, seq
  if seq % 97 == 0 or seq == upto then
    local bad = checks.check(r, true)
    assert(bad == nil, bad)
    reads = reads + 1
  end
  if seq == upto then break end
end
-- the last gated read saw every value
assert(checks.n_of_sum(r.sum:get()) == upto + 1)
r:close()
print(n, reads > 10)
]=])
    local readers = {}
    for k = 1, 4 do
      readers[k] = io.popen("timeout 120 " .. H.lua_command(script, dir,
        2999, tmp .. "/checks.lua") .. " 2>&1")
    end
    local wrote = writer(3000, 3, tmp, nil, true)
    for k = 1, 4 do
      local out = readers[k]:read("a")
      local ok = readers[k]:close()
      assert.is_true(ok, "reader " .. k .. ": " .. out .. "\nthe writer (" ..
        tostring(wrote) .. "): " .. (H.read(tmp .. "/writer.out") or ""))
      assert.equal("3000\ttrue\n", out, "reader " .. k)
    end
  end)

  it("follows the writer with a live view read, and calls the view's " ..
     "methods", function()
    seed(10)
    local r = flume.open(dir, { readonly = true })
    local idx = r:view("idx")
    r:view("sum"); r:view("mod")
    local seqs, stop, err = {}, nil, nil
    stop = idx:read({ live = true }, function(e, entries)
      if e then err = e; return end
      for _, entry in ipairs(entries) do seqs[#seqs + 1] = entry.seq end
    end)
    local pid = writer(400, 3, tmp, 1)
    local t = os.time()
    while #seqs < 400 // 7 and err == nil and os.time() - t < 30 do
      flume.sleep(0.01)
    end
    stop()
    assert.is_nil(err)
    -- every multiple of 7 once (by key, then seq: sort to compare)
    table.sort(seqs)
    local want = {}
    for i = 7, 400, 7 do want[#want + 1] = i - 1 end
    assert.same(want, seqs)
    assert.equal(2 * r.sum:get(), r.sum:double())
    assert.equal(400 * 401, r.sum:double())
    while C.alive(pid) do flume.sleep(0.05) end
    r:close()
  end)

  it("finds the views caught up after a clean close of their writer, so " ..
     "gated reads need no writer", function()
    -- the writer closes at once after its appends, without waiting for
    -- its views: the close lets them index what the log holds
    local w = flume.open(dir, { codec = "msgpack" })
    for _, name in ipairs { "sum", "mod", "idx" } do
      w:use(name, tmp .. "/" .. name .. ".lua")
    end
    for i = 1, 20 do w:append({ i = i }) end
    local vals = {}
    for i = 21, 3000 do vals[#vals + 1] = { i = i } end
    w:append(vals, { batch = true })
    w:close()
    local r = flume.open(dir, { readonly = true })
    local sum = r:view("sum")
    r:view("mod"); r:view("idx")
    for _, name in ipairs { "sum", "mod", "idx" } do
      local st = r[name]:status()
      assert.equal(2999, st.log_since)
      assert.equal(2999, st.since, name .. " was left behind")
    end
    assert.equal(3000 * 3001 // 2, sum:get { timeout = 5 })
    assert.is_nil(checks.check(r, true))
    r:close()
  end)

  it("fails a gated read at once when no writer brings the view up, and " ..
     "serves it ungated", function()
    seed(10)
    writer(15, 1, "none", 0, true) -- 5 more values, the views not attached
    local r = flume.open(dir, { readonly = true })
    local sum = r:view("sum")
    r:view("mod"); r:view("idx")
    assert.equal(55, sum:get { wait = false }) -- 1 + ... + 10
    assert.is_nil(checks.check(r, false))
    -- no writer: the view is at 9, the log at 14; the timeout is not
    -- waited out
    H.raises(function() sum:get { timeout = 30 } end,
      "^flume: ENOWRITER: .*view 'sum' is at seq 9 and the log at 14, " ..
      "and no writer has the database open")
    local ok, err = pcall(function() for _ in r.idx:read() do end end)
    assert.is_false(ok)
    assert.matches("ENOWRITER", err)
    -- async form: the error goes to the callback
    local got
    r.mod:get(1, function(e) got = e end)
    while got == nil do flume.sleep(0.01) end
    assert.matches("^flume: ENOWRITER: .*view 'mod'", got)
    -- a writer runs, but without the view
    local pid = writer(16, 1, "none", 5)
    local t = os.time()
    while r.since < 15 and os.time() - t < 20 do flume.sleep(0.01) end
    H.raises(function() sum:get { timeout = 30 } end,
      "^flume: ENOWRITER: .*view 'sum' is at seq 9 and the log at 15, " ..
      "and the running writer does not have it attached")
    -- the status says where it is
    local st = sum:status()
    assert.equal(9, st.since)
    assert.equal(15, st.log_since)
    while C.alive(pid) do flume.sleep(0.05) end
    r:close()
  end)

  it("fails a gated read at once when the writer's view failed, with " ..
     "its error", function()
    seed(10)
    H.write(tmp .. "/bad.lua", [[return { version = 1, initial = 0,
      reduce = function(t, v)
        if v.i == 12 then error("twelve is bad") end
        return t + 1
      end }]])
    H.write(tmp .. "/badwriter.lua", [=[
local flume = require "flume"
local db = flume.open(arg[1], { codec = "msgpack" })
db:use("bad", arg[2])
db:append({ { i = 11 }, { i = 12 }, { i = 13 } }, { batch = true })
print(pcall(db.bad.get, db.bad))
io.stdout:flush()
flume.sleep(tonumber(arg[3]))
db:close()
]=])
    local p = io.popen(H.lua_command(tmp .. "/badwriter.lua", dir,
      tmp .. "/bad.lua", 5) .. " 2>&1")
    local line = p:read("l") -- the writer saw its view fail
    assert.matches("twelve is bad", line)
    local r = flume.open(dir, { readonly = true })
    local bad = r:view("bad")
    H.raises(function() bad:get { timeout = 30 } end,
      "^flume: EVIEW: in the writer, view 'bad' failed at seq 11: .*" ..
      "twelve is bad")
    local got
    bad:get(function(e) got = e end)
    while got == nil do flume.sleep(0.01) end
    assert.matches("^flume: EVIEW: in the writer, view 'bad' failed", got)
    local listed
    for _, e in ipairs(r:views()) do
      if e.name == "bad" then listed = e end
    end
    assert.matches("twelve is bad", listed.error)
    r:close()
    p:close()
  end)

  it("keeps serving across its writer killed with kill -9, and follows " ..
     "the next writer, which mounts the stored views", function()
    seed(10)
    local r = flume.open(dir, { readonly = true })
    for _, n in ipairs { "sum", "mod", "idx" } do r:view(n) end
    local pid = writer(400000, 20, tmp)
    local t = os.time()
    while r.sum:get { wait = false } < 2000 * 2001 / 2 and
        os.time() - t < 30 do
      assert.is_nil(checks.check(r, true))
      flume.sleep(0.01)
    end
    os.execute("kill -9 " .. pid)
    while C.alive(pid) do flume.sleep(0.01) end
    -- committed data still serves, ungated, equal to the oracle
    assert.is_nil(checks.check(r, false))
    local at = r.sum.since
    assert.is_true(at >= 1999, "the views reached " .. at)
    -- a new writer mounts the views by name (no files) and brings them
    -- up; gated reads now wait for it and see everything
    local n = r.since + 301 -- the values it will hold
    writer(n, 7, "stored", 2)
    t = os.time()
    repeat
      local ok, err = pcall(checks.check, r, true)
      assert(ok or err:match("ENOWRITER"), err)
      if ok then assert.is_nil(err) end
      flume.sleep(0.02)
    until checks.n_of_sum(r.sum:get { wait = false }) == n or
      os.time() - t > 30
    assert.equal(n, checks.n_of_sum(r.sum:get()))
    assert.is_nil(checks.check(r, true))
    r:close()
  end)
end)

describe("the view catalogue", function()
  local tmp, dir
  before_each(function()
    tmp = H.tmpdir()
    dir = tmp .. "/db"
  end)
  after_each(function() H.rm(tmp) end)

  local function by_name(list)
    local t = {}
    for _, e in ipairs(list) do t[e.name] = e end
    return t
  end

  it("keeps each view's script, mounts it by name after reopen, and a " ..
     "version bump replaces it", function()
    local db = flume.open(dir)
    db:use("sum", SUM)
    H.write(tmp .. "/mod.lua", MOD)
    db:use("mod", tmp .. "/mod.lua")
    for i = 1, 20 do db:append({ i = i }) end
    db.sum:ready(); db.mod:ready()
    local views = by_name(db:views())
    assert.equal(SUM, views.sum.script)
    assert.equal("=sum", views.sum.chunkname)
    assert.equal(MOD, views.mod.script)
    assert.equal("@" .. tmp .. "/mod.lua", views.mod.chunkname)
    assert.equal("reduce", views.sum.kind)
    assert.equal("group", views.mod.kind)
    assert.equal(1, views.sum.version)
    assert.equal(19, views.sum.since)
    assert.is_true(views.sum.attached and views.sum.mounted)
    db:close()
    H.rm(tmp .. "/mod.lua") -- the file is no longer needed
    db = flume.open(dir)
    views = by_name(db:views())
    assert.is_false(views.sum.attached or views.sum.mounted)
    assert.equal(210, db:view("sum"):get())
    assert.equal(4, db:view("mod"):get(0))
    assert.equal(db.sum, db:view("sum")) -- mounted already
    -- its indexing goes on
    db:append({ i = 21 })
    assert.equal(231, db.sum:get())
    -- version 2 replaces the stored script
    local SUM2 = SUM:gsub("version = 1", "version = 2"):gsub("t %+ v%.i",
      "t + 2 * v.i")
    db:use("sum", SUM2)
    assert.equal(462, db.sum:get())
    db:close()
    db = flume.open(dir)
    views = by_name(db:views())
    assert.equal(SUM2, views.sum.script)
    assert.equal(2, views.sum.version)
    assert.equal(462, db:view("sum"):get())
    db:close()
  end)

  it("drops a view: record, script and state gone, for good", function()
    local db = flume.open(dir)
    db:use("sum", SUM)
    db:use("idx", IDX)
    for i = 1, 30 do db:append({ i = i }) end
    db.sum:ready(); db.idx:ready()
    local sum = db.sum
    assert.equal(1, db:tables().views.sum.entries) -- its state
    db:drop("sum")
    -- in the same transaction: no record, no script, an empty table
    assert.equal(0, db:tables().views.sum.entries)
    assert.is_nil(rawget(db, "sum"))
    H.raises(function() sum:get() end, "^flume: ENOTFOUND: .*no view " ..
      "named 'sum'")
    assert.same({ "idx" }, (function()
      local t = {}
      for _, e in ipairs(db:views()) do t[#t + 1] = e.name end
      return t
    end)())
    H.raises(function() db:drop("sum") end, "^flume: ENOTFOUND")
    H.raises(function() db:view("sum") end,
      "^flume: ENOTFOUND: .*no stored script for a view named 'sum'")
    db:close()
    db = flume.open(dir)
    assert.equal(1, #db:views())
    assert.equal(0, db:tables().views.sum.entries)
    assert.is_true(db:tables().views.idx.entries > 0)
    db:close()
    -- a reader sees the same
    local r = flume.open(dir, { readonly = true })
    assert.equal("idx", r:views()[1].name)
    H.raises(function() r:view("sum") end, "^flume: ENOTFOUND")
    r:close()
  end)

  it("stores the chunk a view given as a table was written in", function()
    H.write(tmp .. "/tview.lua", SUM)
    local db = flume.open(dir)
    db:use("sum", dofile(tmp .. "/tview.lua"))
    db:use("inline", { version = 3, initial = 0,
      reduce = function(t) return t + 1 end })
    db:append({ i = 4 })
    db.sum:ready(); db.inline:ready()
    local views = by_name(db:views())
    assert.equal("table", views.sum.origin)
    assert.equal(SUM, views.sum.script)
    assert.equal("table", views.inline.origin)
    db:close()
    db = flume.open(dir)
    -- a view module's chunk mounts by name, and its state is kept (the
    -- same hash: no "changed without a version bump")
    assert.equal(4, db:view("sum"):get())
    assert.is_false(db.sum:status().script_changed)
    -- this spec file's chunk does not return the view
    H.raises(function() db:view("inline") end, "^flume: ESCRIPT: .*was " ..
      "given as a Lua table")
    db:close()
  end)
end)
