-- Crash runs against the reference model: a writer with views (a filtering
-- group view, a group view deleting keys, an index view, a reduce view
-- whose version is bumped, two views that fail at a chosen value) is
-- killed with SIGKILL at random moments while it appends, while its views
-- catch up, while a bumped version rebuilds and while db:rebuild() runs.
-- After every kill the database is reopened: the log must hold every
-- acknowledged value, each view's checkpoint must be the model's state at
-- the view's since, and every view, caught up, must equal the model.
--
--   FLUME_SEED=N   replays a seed (the spec prints the one it used)
--   FLUME_SOAK=N   N kills instead of the CI budget
local flume = require "flume"
local H = require "helpers.db"
local M = require "helpers.model"
local G = require "helpers.gen"
local V = require "helpers.crash_model_views"
local C = require "helpers.crash"

-- Issue 8 defects steered around while open (see differential_spec.lua):
-- none now. (1: a filtering group view stalled; a value every view takes
-- was appended before the views were read. 7: a failing view's half-applied
-- state was saved; a failed view's checkpoint was not compared.)
local KNOWN_DEFECTS = {}

local same, show = M.same, M.show
local TIMEOUT = 60

local alive, reopen, read_acks = C.alive, C.reopen, C.read_acks

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local sanitized = H.sanitized

-- A view's entries as the model gives them: { key, acc } or { key, seq }.
local function entries(view, opts)
  local out = {}
  for k, a in view:read(opts) do out[#out + 1] = { k, a } end
  return out
end

-- The view's state read with `opts`, in the model's shape.
local function state(view, kind, opts)
  if kind == "reduce" then return view:get(opts) end
  return entries(view, opts)
end

local function model_state(mv)
  if mv.kind == "reduce" then return mv.state end
  return mv.entries
end

describe("a writer with views killed with SIGKILL, against the model",
function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm(dir) end)

  it("keeps every acknowledged value and every view equal to the model",
    function()
    local seed = tonumber(os.getenv("FLUME_SEED") or "") or os.time()
    local runs = tonumber(os.getenv("FLUME_SOAK") or "") or
      (sanitized() and 3 or 6)
    local r = G.rng(seed)
    local db_dir, ackpath = dir .. "/db", dir .. "/acks"
    local fail = { run = r.int(1, 3), i = r.int(1, 3000),
      i2 = r.int(1, 3000) }
    local version = 1
    local log = {}
    local function say(fmt, ...) log[#log + 1] = string.format(fmt, ...) end
    local ok, err = xpcall(function()
      for run = 1, runs do
        local phase = run == 1 and r.pick({ "append", "catchup" }) or
          r.pick({ "append", "catchup", "bump", "rebuild" })
        if phase == "bump" then version = version + 1 end
        local delay = r.int(0, 300) / 1000
        say("run %d: %s, killed %.3f s in (bumped at version %d)", run,
          phase, delay, version)
        local acks_run = ackpath .. "." .. run
        local p = io.popen(H.lua_command("spec/helpers/crash_model_child.lua",
          db_dir, acks_run, run, phase, version, fail.run, fail.i,
          fail.i2) .. " >" .. dir .. "/child.log 2>&1 & echo $!")
        local pid = tonumber(p:read("l"))
        p:close()
        local waited = 0
        while not exists(acks_run .. ".mark") do
          if not alive(pid) then
            local f = io.open(dir .. "/child.log")
            error("the child died: " .. (f and f:read("a") or "?"), 0)
          end
          flume.sleep(0.005)
          waited = waited + 1
          assert(waited < 6000, "the child never began its phase")
        end
        flume.sleep(delay)
        os.execute("kill -9 " .. pid)
        while alive(pid) do flume.sleep(0.01) end

        -- the log: every acknowledged value, no gap, nothing damaged
        local db = reopen(db_dir, { ready = false })
        local since = db.since
        local model, expect = M.new(), 0
        for seq, v in db:stream() do
          assert.equal(expect, seq)
          assert(V.intact(v), "damaged value at seq " .. seq)
          model:append(v)
          expect = expect + 1
        end
        assert.equal(since + 1, expect)
        local acks = read_acks(ackpath, run)
        for _, a in ipairs(acks) do
          assert(a.seq <= since, "acknowledged seq " .. a.seq ..
            " is past the reopened log's since " .. since)
          local v = model.values[a.seq + 1]
          assert(v.run == a.run and v.i == a.i, "acknowledged seq " ..
            a.seq .. " does not hold what was appended")
        end
        for _ = 1, 20 do -- and db:get agrees with the stream
          local seq = r.int(0, since)
          assert(same(db:get(seq), model.values[seq + 1]))
        end
        say("  %d values, %d acknowledged", since + 1, #acks)

        -- the views' checkpoints, as the crash left them (the indexer is
        -- paused, so nothing moves): the model's state at their since
        local scripts = V.scripts(fail, version)
        for _, name in ipairs(V.NAMES) do
          db:use(name, scripts[name])
          local view = db[name]
          local vsince = view.since
          local mv = model:view(scripts[name], vsince)
          say("  %s: checkpoint at since %d%s", name, vsince,
            mv.failed and " (failed at " .. mv.failed .. ")" or "")
          assert(vsince <= since, name .. "'s since is past the log's")
          if not (mv.failed and KNOWN_DEFECTS[7]) then
            local got = state(view, mv.kind, { wait = false })
            if not same(got, model_state(mv)) then
              error(string.format("view %s's checkpoint at since %d is %s," ..
                " the model says %s", name, vsince, show(got):sub(1, 400),
                show(model_state(mv)):sub(1, 400)), 0)
            end
          end
        end
        db:set_ready()

        -- a value every view takes, then every view caught up
        if KNOWN_DEFECTS[1] then
          local v = V.value(0, 4 * run)
          db:append(v)
          model:append(v)
        end
        for _, name in ipairs(V.NAMES) do
          local view, mv = db[name], model:view(scripts[name])
          local T = { timeout = TIMEOUT }
          if mv.failed then
            local want = "failed at seq " .. mv.failed .. ":"
            local ok2, e = pcall(state, view, mv.kind, T)
            assert(not ok2 and tostring(e):find(want, 1, true),
              name .. " fails at seq " .. mv.failed .. " but read gave " ..
              tostring(e))
          else
            local got = state(view, mv.kind, T)
            if not same(got, model_state(mv)) then
              error(string.format("view %s is %s, the model says %s", name,
                show(got):sub(1, 400), show(model_state(mv)):sub(1, 400)), 0)
            end
          end
        end
        db:close()
      end
    end, function(e) return tostring(e) .. "\n" .. debug.traceback() end)
    if not ok then
      error(string.format("seed %d (replay: FLUME_SEED=%d): %s\n%s", seed,
        seed, err, table.concat(log, "\n")), 0)
    end
    print(string.format("\ncrash runs against the model: seed %d, %d kills",
      seed, runs))
  end)
end)
