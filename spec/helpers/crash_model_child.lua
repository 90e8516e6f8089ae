-- Child process of the crash-against-the-model spec. Usage:
--   crash_model_child.lua DIR ACKS RUN PHASE VERSION FAIL_RUN FAIL_I FAIL_I2
-- Opens the database in DIR, attaches the views of crash_model_views.lua
-- ("bumped" at VERSION), and works in the given phase until it is killed
-- with SIGKILL:
--   append   appends with the views attached (single, batch, async bursts)
--   catchup  appends many values first, then attaches the views, which
--            catch up over them
--   bump     attaches "bumped" at a new VERSION, which rebuilds it
--   rebuild  attaches the views and calls db:rebuild()
-- then appends forever. After each acknowledged append it writes
-- "seq run i\n" to ACKS; when the phase's risky part begins it creates
-- ACKS .. ".mark", so the parent kills it inside that part.
local flume = require "flume"
-- the spec folder, for the helpers shared with the parent
package.path = (arg[0]:match("^(.*)/helpers/[^/]*$") or "spec") ..
  "/?.lua;" .. package.path
local V = require "helpers.crash_model_views"

local dir, ackpath, run, phase = arg[1], arg[2], tonumber(arg[3]), arg[4]
local version = tonumber(arg[5])
local fail = { run = tonumber(arg[6]), i = tonumber(arg[7]),
  i2 = tonumber(arg[8]) }
local acks = assert(io.open(ackpath, "a"))
acks:setvbuf("no")
math.randomseed(run * 7919)

local db = flume.open(dir)
local scripts = V.scripts(fail, version)
local i = 0

local function value()
  i = i + 1
  return V.value(run, i)
end

local function ack(seq, v)
  acks:write(string.format("%d %d %d\n", seq, run, v.i))
end

local function mark()
  local f = assert(io.open(ackpath .. ".mark", "w"))
  f:close()
end

local function use_all()
  for _, name in ipairs(V.NAMES) do db:use(name, scripts[name]) end
end

local function batch(n)
  local list = {}
  for k = 1, n do list[k] = value() end
  local last = db:append(list, { batch = true })
  for k = 1, n do ack(last - n + k, list[k]) end
end

if phase == "catchup" then
  for _ = 1, 3 do batch(2000) end
  mark()
  use_all()
elseif phase == "rebuild" then
  use_all()
  mark()
  db:rebuild(function() end)
else -- append, bump: "bumped" is at a new version when phase is bump
  if phase == "bump" then mark() end
  use_all()
  if phase == "append" then mark() end
end

while true do
  local mode = math.random(3)
  if mode == 1 then
    local v = value()
    ack(db:append(v), v)
  elseif mode == 2 then
    batch(math.random(1, 60))
  else
    local left = math.random(1, 30)
    for _ = 1, left do
      local v = value()
      db:append(v, function(err, seq)
        assert(not err, err)
        ack(seq, v)
        left = left - 1
      end)
    end
    while left > 0 do flume.sleep(0.001) end
  end
  -- a gated read now and then makes the views checkpoint mid-stream (on a
  -- view that neither filters at the end nor fails)
  if math.random(4) == 1 then db.total:get() end
end
