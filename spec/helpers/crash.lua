-- Shared by the crash specs: watching a killed writer go, reopening its
-- folder once its lock is free, and reading the acknowledgements it wrote.
local flume = require "flume"

local C = {}

--- Whether process `pid` still runs (a zombie has released its files).
function C.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return not stat:match("^%d+ %b() Z")
end

--- Opens `dir` once a killed writer has let go of it. Its main thread
-- turns zombie at once, but a thread inside fsync finishes first, and only
-- then are its files (and its lock) released: retry while it is locked.
function C.reopen(dir, opts)
  for _ = 1, 1000 do
    local ok, db = pcall(flume.open, dir, opts)
    if ok then return db end
    assert(tostring(db):find("ELOCKED"), db)
    flume.sleep(0.01)
  end
  error("the killed writer's lock was never released")
end

--- The acknowledgements of runs 1..runs, each run in a file of its own
-- (`path.run`), as { seq, run, i }. Only whole lines count: a line is
-- written after its append was acknowledged, and a kill can cut the last
-- one short.
function C.read_acks(path, runs)
  local acks = {}
  for run = 1, runs do
    local f = io.open(path .. "." .. run)
    if f then
      local text = f:read("a")
      f:close()
      for line in text:gmatch("([^\n]*)\n") do
        local seq, r, i = line:match("^(%d+) (%d+) (%d+)$")
        assert(seq and tonumber(r) == run, "garbled ack line: " .. line)
        acks[#acks + 1] = { seq = tonumber(seq), run = run, i = tonumber(i) }
      end
    end
  end
  return acks
end

return C
