-- flume's side of the benchmark, from Lua through `require "flume"`: one
-- measurement per run, printed as "<row> <values per second>". Run by
-- bench/harness.lua with the build's bench/build/lua.sh.
--
--   append_batch DIR N        N values in batches of 1000, each durable
--   append_async DIR N        N single appends with callbacks, then flume.run()
--   append_each  DIR COUNT    COUNT single sync appends, each awaited
--   rebuild      DIR VIEW...  the views added to a log with the loop paused,
--                             timed from set_ready() until all caught up
--   get_random   DIR N        N db:get at random seqs
--   stream_scan  DIR          for seq, value in db:stream()
--   index_read   DIR          a range read per author over the by_author
--                             view (built by an earlier `rebuild` of DIR)
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local flume = require "flume"
local data = require "data"

local clock = flume.core.hrtime
local here = arg[0]:match("^(.*)/") or "."
local row, dir = arg[1], arg[2]

local function report(name, n, secs)
  print(string.format("%s %.0f", name, n / secs))
end

local function append_batch(n)
  local db <close> = flume.open(dir)
  local secs = 0
  for first = 0, n - 1, 1000 do
    local batch = data.values(first, math.min(1000, n - first))
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

if row == "append_batch" then append_batch(assert(tonumber(arg[3])))
elseif row == "append_async" then append_async(assert(tonumber(arg[3])))
elseif row == "append_each" then append_each(assert(tonumber(arg[3])))
elseif row == "rebuild" then rebuild(table.move(arg, 3, #arg, 1, {}))
elseif row == "get_random" then get_random(assert(tonumber(arg[3])))
elseif row == "stream_scan" then stream_scan()
elseif row == "index_read" then index_read()
else
  io.stderr:write("flume_bench: unknown row ", tostring(row), "\n")
  os.exit(2)
end
