-- flume's side of the benchmark, from Lua through `require "flume"`: one
-- measurement per run, printed as "<row> <values per second>". Run by
-- bench/harness.lua with the build's bench/build/lua.sh.
--
--   append_batch DIR N [wide] N values in batches of 1000, each durable
--                             (the wide values of data.wide_value with
--                             `wide`: rebuild_wide's data set)
--   append_async DIR N        N single appends with callbacks, then flume.run()
--   append_each  DIR COUNT    COUNT single sync appends, each awaited
--   rebuild      DIR VIEW...  the views added to a log with the loop paused,
--                             timed from set_ready() until all caught up
--   get_random   DIR N        N db:get at random seqs
--   stream_scan  DIR          for seq, value in db:stream()
--   index_read   DIR          a range read per author over the by_author
--                             view (built by an earlier `rebuild` of DIR)
--   ro_live_delay DIR COUNT process|writer
--                             COUNT paced sync appends to a new DIR; the
--                             delay from each append's return to a live
--                             stream seeing it, in a reader process (a
--                             read-only handle) or in the writer itself:
--                             prints p50 and p99 in microseconds
--   ro_get       DIR COUNT PROCS
--                             PROCS reader processes (read-only handles)
--                             at once, COUNT db:get at random seqs each:
--                             prints the total gets per second
--   live_read_delay DIR INDEXED COUNT journal|reread
--                             a DIR of INDEXED values (or more: appended
--                             up to INDEXED if fewer) under the
--                             by_author index, a live read of its whole
--                             range, then COUNT appends, each awaited
--                             until the read delivers it: the delay from
--                             the append's return to the delivery, the
--                             read taking each commit's changes from the
--                             view's journal or reading its range again
--                             (flume.view's full_reread): prints p50 and
--                             p99 in microseconds
-- and the children these two start (not rows):
--   ro_follow    DIR COUNT    a live stream of COUNT values on a read-only
--                             handle: prints each one's receipt time
--   ro_getter    DIR COUNT FIRST GO
--                             COUNT gets from the FIRST-th of the random
--                             order, started when the file GO appears
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local flume = require "flume"
local data = require "data"

local clock = flume.core.hrtime
local here = arg[0]:match("^(.*)/") or "."
local row, dir = arg[1], arg[2]

local function report(name, n, secs)
  print(string.format("%s %.0f", name, n / secs))
end

local function append_batch(n, wide)
  local db <close> = flume.open(dir)
  local secs = 0
  for first = 0, n - 1, 1000 do
    local batch = data.values(first, math.min(1000, n - first), wide)
    local t0 = clock()
    db:append(batch, { batch = true })
    secs = secs + clock() - t0
  end
  assert(db.since == n - 1, "the log does not hold every value")
  report(row, n, secs)
end

local function append_async(n)
  local db <close> = flume.open(dir)
  local values = data.values(0, n)
  local acked, failed, commits = 0, nil, 0
  local function done(err)
    if err then failed = failed or err end
    acked = acked + 1
  end
  local stop = db:on_since(function() commits = commits + 1 end)
  collectgarbage()
  local t0 = clock()
  for i = 1, n do db:append(values[i], done) end
  flume.run()
  local t1 = clock()
  stop()
  assert(not failed, failed)
  assert(acked == n and db.since == n - 1, "not every append was acknowledged")
  report(row, n, t1 - t0)
  print(string.format("commits %d", commits))
end

local function append_each(count)
  local db <close> = flume.open(dir)
  local secs = 0
  for i = 0, count - 1 do
    local v = data.value(i)
    local t0 = clock()
    db:append(v)
    secs = secs + clock() - t0
  end
  report(row, count, secs)
end

local function view_path(name) return here .. "/views/" .. name .. ".lua" end

local function rebuild(names)
  local db <close> = flume.open(dir, { ready = false })
  local n = db.since + 1
  for _, name in ipairs(names) do db:use(name, view_path(name)) end
  collectgarbage()
  local t0 = clock()
  db:set_ready()
  for _, name in ipairs(names) do db[name]:ready() end
  local t1 = clock()
  -- Not timed: the views hold what they should.
  for _, name in ipairs(names) do
    local total = 0
    if name == "types" then
      for _, c in pairs(db.types:get()) do total = total + c end
    elseif name == "authors" then
      for _, c in db.authors:read() do total = total + c end
    else
      total = n
    end
    assert(total == n, name .. " counted " .. total .. " values of " .. n)
  end
  report(row, n, t1 - t0)
end

local function get_random(count)
  local db <close> = flume.open(dir)
  local n, random_seq = db.since + 1, data.random_seq
  local t0 = clock()
  for i = 0, count - 1 do
    local seq = random_seq(i, n)
    if db:get(seq).seq ~= seq then error("wrong value at seq " .. seq) end
  end
  local t1 = clock()
  report(row, count, t1 - t0)
end

local function stream_scan()
  local db <close> = flume.open(dir)
  local n = 0
  local t0 = clock()
  for _, v in db:stream() do n = n + 1 end
  local t1 = clock()
  assert(n == db.since + 1, "the stream missed values")
  report(row, n, t1 - t0)
end

local function index_read()
  local db <close> = flume.open(dir)
  db:use("by_author", view_path("by_author"))
  db.by_author:ready()
  local authors = table.move(data.AUTHORS, 1, #data.AUTHORS, 1, {})
  table.sort(authors)
  local view, n = db.by_author, 0
  local t0 = clock()
  for _, a in ipairs(authors) do
    for _, _, v in view:read { gte = a, lte = a } do n = n + 1 end
  end
  local t1 = clock()
  assert(n == db.since + 1, "the index read " .. n .. " values, not " ..
    db.since + 1)
  report(row, n, t1 - t0)
end

-- Reader processes ------------------------------------------------------------

-- Both measurements below start their reader processes themselves, with this
-- Lua and this script (lua.sh's paths are in the environment), bounded by
-- `timeout` so that none outlives a failed run; every one is waited for.
local function child(...)
  local words = { "timeout", "300", arg[-1], arg[0], ... }
  for i, w in ipairs(words) do
    words[i] = "'" .. tostring(w):gsub("'", "'\\''") .. "'"
  end
  return assert(io.popen(table.concat(words, " ")))
end

--- Closes a child's pipe (waiting for it); raises if it failed.
local function reap(p, what)
  local ok, how, code = p:close()
  if not ok then error(what .. " failed (" .. how .. " " .. code .. ")", 0) end
end

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(p * #sorted))]
end

-- A live stream's receipt times: times[i] is when value i-1 (seq i-1 of a
-- log that started empty) reached the callback.
local function follow_times(db, count, on_ready)
  local times, last, stop = {}, -1, nil
  stop = db:stream({ gte = 0, live = true }, function(err, entries)
    assert(err == nil, err)
    local t = clock()
    for _, e in ipairs(entries) do
      assert(e.seq == last + 1, ("seq %d after %d"):format(e.seq, last))
      assert(e.value.seq == e.seq, "seq " .. e.seq .. " holds another value")
      last = e.seq
      times[#times + 1] = t
    end
    if #times >= count then stop() end
  end)
  if on_ready then on_ready() end
  return times
end

-- The warm-up: appends not counted (the first polls, page faults).
local WARM = 50

local function ro_live_delay(count, where)
  -- The reader process starts before the writer opens the folder: a child
  -- forked from a process with LMDB open would inherit its descriptors.
  local db = flume.open(dir)
  db:close()
  local total = WARM + count
  local values = data.values(0, total)
  local reader, times
  if where == "process" then
    reader = child("ro_follow", dir, total)
    local line = reader:read("l")
    if line ~= "ready" then
      reap(reader, "the reader process")
      error("the reader process did not start", 0)
    end
  end
  db = flume.open(dir)
  if where == "writer" then times = follow_times(db, total) end
  -- Paced: one append every 1 to 2 ms (pseudo-random, so that the pace
  -- does not lock onto the reader's poll), whatever the fsync took.
  local acked, next_at = {}, clock() + 0.01
  for i = 1, total do
    local wait = next_at - clock()
    if wait > 0.0005 then flume.sleep(wait) end
    db:append(values[i])
    acked[i] = clock()
    next_at = math.max(next_at, clock()) + 0.001 + (data.mix(i) % 1000) / 1e6
  end
  if where == "process" then
    times = {}
    for line in reader:lines() do times[#times + 1] = tonumber(line) end
    reap(reader, "the reader process")
  else
    local deadline = clock() + 60
    while #times < total and clock() < deadline do flume.sleep(0.001) end
  end
  db:close()
  assert(#times == total, ("the live stream saw %d values of %d"):format(
    #times, total))
  local delays = {}
  for i = WARM + 1, total do
    delays[#delays + 1] = (times[i] - acked[i]) * 1e6
  end
  table.sort(delays)
  local sum = 0
  for _, d in ipairs(delays) do sum = sum + d end
  print(string.format("p50 %.0f", percentile(delays, 0.5)))
  print(string.format("p99 %.0f", percentile(delays, 0.99)))
  io.stderr:write(string.format("  ro_live_delay %s: %d samples, min %.0f, " ..
    "mean %.0f, max %.0f us\n", where, #delays, delays[1], sum / #delays,
    delays[#delays]))
end

local function live_read_delay(indexed, count, mode)
  local V = require "flume.view"
  local warm = 5
  local db = flume.open(dir, { sync = false })
  db:use("by_author", view_path("by_author"))
  -- a DIR of an earlier run (the other mode) is used as it is
  for first = db.since + 1, indexed - 1, 1000 do
    db:append(data.values(first, math.min(1000, indexed - first)),
      { batch = true })
  end
  db.by_author:ready()
  indexed = db.since + 1
  V.full_reread = mode == "reread"
  local it = db.by_author:read { live = true }
  V.full_reread = false
  local times, failed = {}, nil
  flume.spawn(function()
    local ok, err = pcall(function()
      for _, seq, v in it do
        if seq >= indexed then
          assert(v.seq == seq, "seq " .. seq .. " holds another value")
          times[seq] = clock()
        end
      end
    end)
    if not ok then failed = err end
  end)
  local values = data.values(indexed, warm + count)
  local delays = {}
  for i = 1, warm + count do
    local seq = indexed + i - 1
    db:append(values[i])
    local acked = clock()
    local deadline = acked + 60
    while not times[seq] and not failed and clock() < deadline do
      flume.sleep(0.0002)
    end
    assert(not failed, failed)
    assert(times[seq], "the live read did not deliver seq " .. seq)
    if i > warm then delays[#delays + 1] = (times[seq] - acked) * 1e6 end
  end
  db:close()
  table.sort(delays)
  print(string.format("p50 %.0f", percentile(delays, 0.5)))
  print(string.format("p99 %.0f", percentile(delays, 0.99)))
  io.stderr:write(string.format("  live_read_delay %d %s: %d samples, " ..
    "min %.0f, max %.0f us\n", indexed, mode, #delays, delays[1],
    delays[#delays]))
end

local function ro_follow(count)
  local db = flume.open(dir, { readonly = true })
  local times = follow_times(db, count, function()
    io.stdout:write("ready\n")
    io.stdout:flush()
  end)
  -- the writer appends one every 1-2 ms: far past that it has failed
  local deadline = clock() + 30 + count * 0.004
  while #times < count and clock() < deadline do flume.sleep(0.01) end
  db:close()
  assert(#times == count, ("saw %d values of %d"):format(#times, count))
  local out = {}
  for i, t in ipairs(times) do out[i] = string.format("%.9f", t) end
  io.stdout:write(table.concat(out, "\n"), "\n")
end

local function ro_get(count, procs)
  local go = dir .. ".go"
  os.remove(go)
  local kids, failed = {}, nil
  for k = 1, procs do
    kids[k] = child("ro_getter", dir, count, (k - 1) * count, go)
  end
  for k = 1, procs do
    if kids[k]:read("l") ~= "ready" then failed = failed or "reader " .. k end
  end
  -- all open: go (also after a failure, so that none waits forever)
  assert(io.open(go, "w")):close()
  local first, last, n = math.huge, -math.huge, 0
  for k = 1, procs do
    local out = kids[k]:read("a")
    local ok = kids[k]:close()
    local t0, t1, got = out:match("^start (%S+)\nend (%S+)\ngets (%d+)\n$")
    if not ok or not t0 then
      failed = failed or "reader " .. k
    else
      first = math.min(first, tonumber(t0))
      last = math.max(last, tonumber(t1))
      n = n + tonumber(got)
    end
  end
  os.remove(go)
  if failed then error(failed .. " failed", 0) end
  report(row, n, last - first)
end

local function ro_getter(count, from, go)
  local db = flume.open(dir, { readonly = true })
  io.stdout:write("ready\n")
  io.stdout:flush()
  local function started()
    local f = io.open(go)
    if f then f:close() end
    return f ~= nil
  end
  while not started() do flume.sleep(0.001) end
  local n, random_seq = db.since + 1, data.random_seq
  local t0 = clock()
  for i = from, from + count - 1 do
    local seq = random_seq(i, n)
    if db:get(seq).seq ~= seq then error("wrong value at seq " .. seq) end
  end
  local t1 = clock()
  db:close()
  print(string.format("start %.9f\nend %.9f\ngets %d", t0, t1, count))
end

if row == "append_batch" then
  append_batch(assert(tonumber(arg[3])), arg[4] == "wide")
elseif row == "append_async" then append_async(assert(tonumber(arg[3])))
elseif row == "append_each" then append_each(assert(tonumber(arg[3])))
elseif row == "rebuild" then rebuild(table.move(arg, 3, #arg, 1, {}))
elseif row == "get_random" then get_random(assert(tonumber(arg[3])))
elseif row == "stream_scan" then stream_scan()
elseif row == "index_read" then index_read()
elseif row == "ro_live_delay" then
  ro_live_delay(assert(tonumber(arg[3])), arg[4])
elseif row == "live_read_delay" then
  live_read_delay(assert(tonumber(arg[3])), assert(tonumber(arg[4])), arg[5])
elseif row == "ro_follow" then ro_follow(assert(tonumber(arg[3])))
elseif row == "ro_get" then
  ro_get(assert(tonumber(arg[3])), assert(tonumber(arg[4])))
elseif row == "ro_getter" then
  ro_getter(assert(tonumber(arg[3])), assert(tonumber(arg[4])), arg[5])
else
  io.stderr:write("flume_bench: unknown row ", tostring(row), "\n")
  os.exit(2)
end
