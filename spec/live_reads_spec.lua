-- Live reads of group and index views, randomized. Random logs (with
-- deleted group keys, accumulators set again to what they were, index
-- values under several keys or none), random bounds and limits, and
-- appends, big batches, rebuilds and version bumps while several live
-- reads follow the view: some take each commit's changes from the view's
-- journal, some read their range again after each commit (the path the
-- journal falls back on), and the journal is made to overflow now and
-- then. Each read reports its steps (flume.view's on_step hook); every
-- step is checked against the reference model (spec/helpers/model.lua)
-- at the step's since:
--
-- * the first pass: every entry in range, in key order, up to the limit;
-- * an index view's step (lo, hi]: its entries in range with a seq in
--   (lo, hi], in key order then seq order;
-- * a group view's step: the keys in range whose accumulator at hi is not
--   the one the read delivered last for that key, in key order; a deleted
--   key is not delivered, and one that comes back with the accumulator
--   the read delivered last is not delivered again;
-- * the limit counts over all of it; steps follow each other without a
--   gap, and the read reaches the view's since.
--
--   FLUME_SEED=N   replays seed N (its seed is printed on failure)
--   FLUME_SOAK=N   runs N seeds from FLUME_SEED_BASE (default the clock)
local flume = require "flume"
local V = require "flume.view"
local H = require "helpers.db"
local M = require "helpers.model"
local G = require "helpers.gen"
local C = require "helpers.crash"

local show, key_cmp, key_id = M.show, M.key_cmp, M.key_id
local encode = flume.core.encode

local TIMEOUT = 60 -- seconds a read may take to reach the view's since

local KEYS = { 0, 1, 2, 3, 5, 8, -1, 2.5, "a", "b", "ab", "", true,
  { "a", 1 }, { "a" } }

local function script(kind, version)
  if kind == "group" then
    return ([[
-- per key: the sum of n; n = 0 deletes the key, n = 5 sets it to 7, n = 4
-- leaves it as it is
return {
  version = %d,
  map = function(v) return v.k, v.n end,
  reduce = function(acc, n)
    if n == 0 then return nil end
    if n == 5 then return 7 end
    if n == 4 then return acc end
    return (acc or 0) + n
  end,
}]]):format(version)
  end
  return ([[
-- values by k; n = 0: none, n = 1: under k and k2 (perhaps the same)
return {
  version = %d,
  map = function(v)
    if v.n == 0 then return nil end
    if v.n == 1 then return { v.k, v.k2 } end
    return v.k
  end,
}]]):format(version)
end

-- Bounds over the keys the values use, now and then over any key.
local function bounds(r)
  local function key() return r.chance(0.7) and r.pick(KEYS) or G.key(r) end
  local o = {}
  local lo = r.int(0, 2)
  if lo == 1 then o.gt = key() elseif lo == 2 then o.gte = key() end
  local hi = r.int(0, 2)
  if hi == 1 then o.lt = key() elseif hi == 2 then o.lte = key() end
  return o
end

local function value(r)
  return { k = r.pick(KEYS), k2 = r.pick(KEYS), n = r.int(0, 6) }
end

local Case = {}
Case.__index = Case

function Case:fail(fmt, ...)
  error(string.format(fmt, ...), 0)
end

function Case:append_list(list, batch)
  if batch then
    self.db:append(list, { batch = true })
  else
    for _, v in ipairs(list) do self.db:append(v) end
  end
  for _, v in ipairs(list) do self.model:append(v) end
end

-- The view's journal bound: now and then small, so that it overflows.
function Case:bound()
  if self.small and flume.core.test_hooks then
    self.db._c:view_journal_max("v", self.small)
  end
end

function Case:use()
  self.db:use("v", script(self.kind, self.version))
  self:bound()
end

-- A live read that records what it delivers and its steps.
function Case:reader()
  local r = self.r
  local o = bounds(r)
  if r.chance(0.3) then o.limit = r.int(1, 30) end
  local rd = { opts = M.copy(o), got = {}, steps = {}, top = -1,
    journal = r.chance(0.6) }
  o.live = true
  V.full_reread = not rd.journal
  V.on_step = function(path, lo, hi)
    rd.steps[#rd.steps + 1] = { path = path, lo = lo, hi = hi,
      at = #rd.got }
    if hi > rd.top then rd.top = hi end
  end
  local ok, it = pcall(self.db.v.read, self.db.v, o)
  V.full_reread, V.on_step = false, nil
  if not ok then error(it, 0) end
  flume.spawn(function()
    local fine, err = pcall(function()
      for k, x in it do rd.got[#rd.got + 1] = { k, x } end
    end)
    rd.done, rd.err = true, not fine and tostring(err) or nil
  end)
  self.readers[#self.readers + 1] = rd
end

-- Waits until the view has caught up with the log and every read has
-- delivered up to the view's since (or ended).
function Case:settle()
  self.db.v:ready()
  local since = self.db.v.since
  local waited = 0
  while true do
    local all = true
    for _, rd in ipairs(self.readers) do
      if rd.err then self:fail("a live read failed: %s", rd.err) end
      if not rd.done and rd.top < since then all = false end
    end
    if all then return end
    flume.sleep(0.001)
    waited = waited + 1
    if waited > TIMEOUT * 1000 then
      self:fail("the live reads did not reach since %d", since)
    end
  end
end

function Case:step()
  local r = self.r
  local op = r.weighted({ { 5, "append" }, { 5, "batch" }, { 1, "big" },
    { 1, "rebuild" }, { 1, "bump" }, { 1, "reader" },
    { flume.core.test_hooks and 1 or 0, "fail" } })
  self.ops[#self.ops + 1] = op
  if op == "append" then
    self:append_list({ value(r) })
  elseif op == "batch" then
    local list = {}
    for i = 1, r.int(2, 10) do list[i] = value(r) end
    self:append_list(list, r.chance(0.7))
  elseif op == "big" then
    -- past an indexer slice: several checkpoints, the journal bound
    local list = {}
    for i = 1, r.int(100, 700) do list[i] = value(r) end
    self:append_list(list, true)
  elseif op == "rebuild" or op == "bump" then
    if op == "rebuild" then
      self.db:rebuild()
    else
      self.version = self.version + 1
      self:use()
    end
    -- appends while it rebuilds, now and then
    if r.chance(0.5) then
      local list = {}
      for i = 1, r.int(1, 20) do list[i] = value(r) end
      self:append_list(list, true)
    end
  elseif op == "reader" then
    self:reader()
  elseif op == "fail" then
    -- the checkpoint of this append fails: nothing of it is stored, the
    -- view indexes it again, and its journal forgets what it recorded
    self:append_list({ value(r) })
    self.db._c:fail_commits("EIO", 1)
  end
  self:settle()
  if op == "fail" then self.db._c:fail_commits("EIO", 0) end
end

-- The model's view (its entries in key order) at since `upto`.
function Case:view_at(upto)
  local v = self.views[upto]
  if not v then
    v = self.model:view(script(self.kind, 1), upto)
    self.views[upto] = v
  end
  return v
end

function Case:check(rd, n)
  local index, steps, got = self.kind == "index", rd.steps, rd.got
  local limit = rd.opts.limit or math.huge
  local where = string.format("live read %d %s (%s)", n, show(rd.opts),
    rd.journal and "journal" or "range")
  if #steps == 0 or steps[1].path ~= "first" or steps[1].at ~= 0 then
    self:fail("%s: it did not begin with its first pass", where)
  end
  local seen, delivered, reached = {}, 0, -1
  for i, st in ipairs(steps) do
    if i > 1 then
      if st.path == "first" then
        self:fail("%s: a second first pass at step %d", where, i)
      end
      if not rd.journal and st.path == "journal" then
        self:fail("%s: a step from the journal", where)
      end
      if st.lo ~= reached then
        self:fail("%s: step %d delivers from %d, after %d", where, i, st.lo,
          reached)
      end
    end
    local upto = (steps[i + 1] and steps[i + 1].at) or #got
    local want = {}
    local remaining = limit - delivered
    for _, e in ipairs(M.read(self:view_at(st.hi), rd.opts)) do
      if #want >= remaining then break end
      if index then
        if i == 1 or e[2] > st.lo then want[#want + 1] = e end
      else
        local id, packed = key_id(e[1]), encode(e[2])
        if i == 1 or seen[id] ~= packed then want[#want + 1] = e end
        seen[id] = packed
      end
    end
    local have = {}
    for j = st.at + 1, upto do have[#have + 1] = got[j] end
    if not M.same(have, want) then
      self:fail("%s: step %d (%s, %d..%d] gave %s, the model says %s",
        where, i, st.path, st.lo, st.hi, show(have), show(want))
    end
    delivered = delivered + #have
    if st.hi > reached then reached = st.hi end
  end
  if delivered < limit and reached < self.db.v.since then
    self:fail("%s: it reached since %d, the view is at %d", where, reached,
      self.db.v.since)
  end
  if delivered > limit then
    self:fail("%s: %d entries past its limit", where, delivered - limit)
  end
end

local journal_steps, range_steps = 0, 0

-- A writer process: attaches the view by its stored script, appends the
-- batches of a file (a Lua chunk returning a list of lists), a few ms
-- apart, and waits for its view before it closes.
local WRITER = [[
local flume = require "flume"
local dir, batches = arg[1], dofile(arg[2])
local db = flume.open(dir)
db:view("v")
for _, list in ipairs(batches) do
  db:append(list, { batch = true })
  flume.sleep(0.002 * (#list % 4))
end
db.v:ready()
db:close()
]]

-- Live reads on a read-only handle, in this process, while a writer
-- process appends: the journal is the writer's, so every step reads the
-- range again.
local function run_reader_case(seed)
  local r = G.rng(seed)
  local kind = r.chance(0.5) and "group" or "index"
  local tmp = H.tmpdir()
  local dir = tmp .. "/db"
  local case = setmetatable({ r = r, model = M.new(), readers = {},
    views = {}, ops = {}, version = 1, kind = kind }, Case)
  local ok, err = xpcall(function()
    local w = flume.open(dir)
    w:use("v", script(kind, 1))
    local initial = {}
    for i = 1, r.int(0, 30) do initial[i] = value(r) end
    if #initial > 0 then w:append(initial, { batch = true }) end
    w.v:ready()
    w:close()
    for _, v in ipairs(initial) do case.model:append(v) end
    local batches = {}
    for b = 1, r.int(5, 25) do
      local list = {}
      for i = 1, r.int(1, 8) do
        list[i] = value(r)
        case.model:append(list[i])
      end
      batches[b] = list
    end
    H.write(tmp .. "/batches.lua", "return " .. show(batches))
    H.write(tmp .. "/writer.lua", WRITER)
    case.db = flume.open(dir, { readonly = true })
    case.db:view("v")
    for _ = 1, r.int(1, 3) do case:reader() end
    local p = io.popen(H.lua_command(tmp .. "/writer.lua", dir,
      tmp .. "/batches.lua") .. " >" .. tmp .. "/writer.out 2>&1 & echo $!")
    local pid = tonumber(p:read("l"))
    p:close()
    local since, waited = case.model:since(), 0
    while C.alive(pid) do
      flume.sleep(0.005)
      waited = waited + 5
      if waited > TIMEOUT * 1000 then case:fail("the writer hangs") end
    end
    if case.db.since ~= since then
      local f = io.open(tmp .. "/writer.out")
      case:fail("the writer process stopped at seq %d, not %d: %s",
        case.db.since, since, f and f:read("a") or "")
    end
    waited = 0
    while true do
      local all = true
      for _, rd in ipairs(case.readers) do
        if rd.err then case:fail("a live read failed: %s", rd.err) end
        if not rd.done and rd.top < since then all = false end
      end
      if all then break end
      flume.sleep(0.001)
      waited = waited + 1
      if waited > TIMEOUT * 1000 then
        case:fail("the live reads did not reach since %d", since)
      end
    end
    for n, rd in ipairs(case.readers) do
      case:check(rd, n)
      for i = 2, #rd.steps do
        if rd.steps[i].path ~= "range" then
          case:fail("live read %d on a read-only handle: step %d came " ..
            "from %s", n, i, rd.steps[i].path)
        end
      end
    end
  end, function(e) return tostring(e) .. "\n" .. debug.traceback() end)
  if case.db then pcall(case.db.close, case.db) end
  H.rm(tmp)
  if not ok then
    error(string.format("seed %d, a read-only handle (%s view): %s\n" ..
      "replay: FLUME_SEED=%d busted spec/live_reads_spec.lua", seed, kind,
      err, seed), 0)
  end
end

local function run_case(seed, backend)
  local r = G.rng(seed)
  local case = setmetatable({ r = r, model = M.new(), readers = {},
    views = {}, ops = {}, version = 1,
    kind = r.chance(0.5) and "group" or "index",
    small = r.chance(0.4) and r.int(64, 3000) or nil }, Case)
  local dir = backend == "lmdb" and H.tmpdir() or nil
  local ok, err = xpcall(function()
    case.db = flume.open(dir and dir .. "/db", { sync = false })
    case:use()
    local initial = {}
    for i = 1, r.int(0, 40) do initial[i] = value(r) end
    if #initial > 0 then case:append_list(initial, true) end
    for _ = 1, r.int(1, 4) do case:reader() end
    case:settle()
    for _ = 1, r.int(4, 14) do case:step() end
    for n, rd in ipairs(case.readers) do case:check(rd, n) end
  end, function(e) return tostring(e) .. "\n" .. debug.traceback() end)
  for _, rd in ipairs(case.readers) do
    for _, st in ipairs(rd.steps) do
      if st.path == "journal" then journal_steps = journal_steps + 1
      elseif st.path == "range" then range_steps = range_steps + 1 end
    end
  end
  if case.db then pcall(case.db.close, case.db) end
  H.rm(dir)
  if not ok then
    error(string.format("seed %d on %s (%s view, journal bound %s, " ..
      "steps %s): %s\nreplay: FLUME_SEED=%d busted spec/live_reads_spec.lua",
      seed, backend, case.kind, tostring(case.small),
      table.concat(case.ops, " "), err, seed), 0)
  end
end

local seeds = {}
local only = tonumber(os.getenv("FLUME_SEED") or "")
local soak = tonumber(os.getenv("FLUME_SOAK") or "")
if only then
  seeds = { only }
else
  local n = soak or (H.sanitized() and 8 or 40)
  local base = tonumber(os.getenv("FLUME_SEED_BASE") or "") or
    (soak and os.time() or 1)
  for i = 0, n - 1 do seeds[#seeds + 1] = base + i end
end

describe("live reads of group and index views", function()
  for _, backend in ipairs(H.backends) do
    it(string.format("deliver each step as the model says, from the " ..
      "journal or not, on %d random cases on %s (seeds %d..%d)", #seeds,
      backend, seeds[1], seeds[#seeds]), function()
      print(string.format("live_reads_spec: seeds %d..%d on %s", seeds[1],
        seeds[#seeds], backend))
      local failures = {}
      for _, seed in ipairs(seeds) do
        local ok, err = pcall(run_case, seed, backend)
        if not ok then
          failures[#failures + 1] = err
          if #failures >= 3 then break end
        end
      end
      if #failures > 0 then error(table.concat(failures, "\n\n"), 0) end
    end)
  end

  it(string.format("deliver each step as the model says on a read-only " ..
    "handle while a writer process appends (seeds %d..%d)", seeds[1],
    seeds[math.min(#seeds, 4)]), function()
    for i = 1, math.min(#seeds, 4) do run_reader_case(seeds[i]) end
  end)

  it("took steps from the journal and by reading the range again", function()
    -- the cases above ran both paths (a check of the spec itself)
    assert.is_true(journal_steps > 0, "no step came from the journal")
    assert.is_true(range_steps > 0, "no step read its range again")
  end)
end)
