-- Crash safety: a writer killed with SIGKILL at any instant loses nothing it
-- acknowledged, and leaves a log without gaps or damaged values.
local flume = require "flume"
local H = require "helpers.db"

local function sleep(s) flume.sleep(s) end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return not stat:match("^%d+ %b() Z") -- a zombie has released its files
end

local function start_child(dir, ackpath, run)
  local p = io.popen(H.lua_command("spec/helpers/crash_child.lua", dir,
    ackpath, run) .. " >/dev/null 2>&1 & echo $!")
  local pid = tonumber(p:read("l"))
  p:close()
  return pid
end

local function read_acks(path)
  local f = io.open(path)
  if not f then return {} end
  local text = f:read("a")
  f:close()
  local acks = {}
  -- only whole lines: a line is written after its append was acknowledged
  for seq, run, i in text:gmatch("(%d+) (%d+) (%d+)\n") do
    acks[#acks + 1] = { seq = tonumber(seq), run = tonumber(run),
      i = tonumber(i) }
  end
  return acks
end

local function intact(v)
  return type(v) == "table" and type(v.data) == "string" and
    #v.data == v.len and
    v.data == string.rep(string.char(65 + v.i % 26), v.len)
end

describe("a writer killed with SIGKILL", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it("loses no acknowledged value and leaves no gap", function()
    local db_dir, ackpath = dir .. "/db", dir .. "/acks"
    math.randomseed(os.time())
    local total_acks, kills = 0, 0
    for run = 1, 12 do
      local pid = start_child(db_dir, ackpath, run)
      sleep(0.08 + math.random() * 0.4)
      os.execute("kill -9 " .. pid)
      kills = kills + 1
      while alive(pid) do sleep(0.01) end

      local acks = read_acks(ackpath)
      local db = flume.open(db_dir)
      local since = db.since
      for _, a in ipairs(acks) do
        assert(a.seq <= since, "acknowledged seq " .. a.seq ..
          " is past the reopened log's since " .. since)
        local v = db:get(a.seq)
        assert(intact(v) and v.run == a.run and v.i == a.i,
          "acknowledged seq " .. a.seq .. " does not hold what was appended")
      end
      local expect = 0
      for seq, v in db:stream() do
        assert.equal(expect, seq)
        assert(intact(v), "damaged value at seq " .. seq)
        expect = expect + 1
      end
      assert.equal(since + 1, expect)
      db:close()
      total_acks = #acks
    end
    assert.equal(12, kills)
    assert.is_true(total_acks > 0, "the child never got to append")
    print(string.format("\n%d acknowledged values checked after %d kills", total_acks, kills))
  end)
end)
