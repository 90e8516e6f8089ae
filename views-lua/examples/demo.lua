-- The demo: appends a realistic stream of events into a durable flume
-- database in a local folder, reads them back, and says how fast each step
-- was. Run it again and the log is still there: it only ever grows.
--
--   lua5.4 views-lua/examples/demo.lua [folder] [count]
local flume = require "flume"

local dir = arg[1] or "./demo-db"
local count = tonumber(arg[2]) or 200000
local clock = flume.core.hrtime

local TYPES = { "post", "like", "follow", "reply", "repost", "mute",
  "vote", "edit" }
local WORDS = { "flume", "log", "view", "seq", "since", "lua", "lmdb",
  "stream", "reduce", "index", "append", "event", "local", "first" }

-- A deterministic generator, so every run appends comparable data.
local state = 2463534242
local function rand(n)
  state = (state * 1103515245 + 12345) % 2147483648
  return state % n + 1
end

local function event(i)
  local words = {}
  for w = 1, 14 do words[w] = WORDS[rand(#WORDS)] end
  return {
    type = TYPES[rand(#TYPES)],
    author = "@user" .. rand(1000),
    seq = i,
    amount = rand(10000) / 100,
    text = table.concat(words, " "),
  }
end

local function rate(n, secs)
  return string.format("%10.0f values/s", n / secs)
end

local db <close> = flume.open(dir)
local before = db.since
print(string.format("flume %s: %s holds %d values (since %d)",
  flume.version, dir, before + 1, before))

-- 1. batches of 1000, each durable (fsynced) before the next
local batches = {}
for i = 1, count do
  local b = batches[#batches]
  if b == nil or #b == 1000 then
    b = {}
    batches[#batches + 1] = b
  end
  b[#b + 1] = event(i)
end
local t0 = clock()
for _, b in ipairs(batches) do db:append(b, { batch = true }) end
local t1 = clock()
batches = nil
print(string.format("appended %d values in batches of 1000:  %s (%.2f s)",
  count, rate(count, t1 - t0), t1 - t0))

-- 2. single appends issued without waiting: group commit gathers them
local singles, acked, commits = count // 10, 0, 0
local events = {}
for i = 1, singles do events[i] = event(i) end
local stop = db:on_since(function() commits = commits + 1 end)
t0 = clock()
for i = 1, singles do
  db:append(events[i], function(err)
    assert(not err, err)
    acked = acked + 1
  end)
end
flume.run()
stop()
t1 = clock()
print(string.format("appended %d single values, async:       %s " ..
  "(%d commits, %.0f values per commit)", acked, rate(acked, t1 - t0),
  commits, acked / commits))

-- 3. read back everything this run appended
local n, amount = 0, 0
t0 = clock()
for _, v in db:stream { gt = before } do
  n = n + 1
  amount = amount + v.amount
end
t1 = clock()
print(string.format("streamed %d values back:                %s (%.2f s)",
  n, rate(n, t1 - t0), t1 - t0))

-- 4. random reads
local gets = 100000
t0 = clock()
for _ = 1, gets do
  local seq = before + rand(n)
  assert(db:get(seq))
end
t1 = clock()
print(string.format("read %d values at random seqs:          %s", gets,
  rate(gets, t1 - t0)))

assert(n == count + singles, "the stream did not return every value")
print(string.format("the log now holds %d values (since %d); total amount " ..
  "this run: %.2f", db.since + 1, db.since, amount))
