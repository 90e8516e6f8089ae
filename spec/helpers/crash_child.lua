-- Child process of the crash spec: appends to the database in arg[1] in an
-- endless loop (single sync appends, batches, and bursts of async appends
-- that ride one group commit), and after each acknowledgement writes
-- "seq run i\n" to the file arg[2]. It is killed with SIGKILL at a random
-- moment; whatever it wrote to arg[2] was acknowledged before.
local flume = require "flume"

local dir, ackpath, run, views = arg[1], arg[2], tonumber(arg[3]), arg[4]
local acks = assert(io.open(ackpath, "a"))
acks:setvbuf("no")
local db = flume.open(dir)
math.randomseed(run * 7919)
if views then
  -- three views, so every kill can land inside a checkpoint too
  db:use("types", "views-lua/examples/count_by_type.lua")
  db:use("total", "views-lua/examples/total_amount.lua")
  db:use("authors", "views-lua/examples/by_author.lua")
end
local TYPES = { "post", "like", "follow", "reply" }

local i = 0
local function value()
  i = i + 1
  local len = math.random(1, 800)
  return { run = run, i = i, len = len,
    data = string.rep(string.char(65 + i % 26), len),
    type = TYPES[i % 4 + 1], author = "@" .. (i % 7), amount = i % 10 }
end

-- One write per line: a kill can cut only the last line of this run's
-- file, which the parent ignores for lack of its newline.
local function ack(seq, v)
  acks:write(string.format("%d %d %d\n", seq, run, v.i))
end

while true do
  local mode = math.random(3)
  if mode == 1 then
    local v = value()
    ack(db:append(v), v)
  elseif mode == 2 then
    local batch = {}
    for k = 1, math.random(1, 40) do batch[k] = value() end
    local last = db:append(batch, { batch = true })
    for k = 1, #batch do ack(last - #batch + k, batch[k]) end
  else
    for _ = 1, math.random(1, 30) do
      local v = value()
      db:append(v, function(err, seq)
        assert(not err, err)
        ack(seq, v)
      end)
    end
    flume.run()
  end
  -- a read now and then makes the views checkpoint mid-stream
  if views and math.random(4) == 1 then db.types:get("post") end
end
