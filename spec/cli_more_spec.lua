-- The `flume` command for scripts (--json, exit codes), its shell and
-- status --watch: the real executable, run as a child process on temporary
-- folders (the rest of it: cli_spec.lua).
local H = require "helpers.db"
local cjson = require "cjson"

local q, write = H.q, H.write

local tmp -- a fresh folder per test
local function fresh_tmp() tmp = H.tmpdir() end

describe("the flume command for scripts", function()
  before_each(fresh_tmp)
  after_each(function() H.rm(tmp) end)

  local function run(args, input)
    local cmd = H.flume_command(args)
    if input then
      H.write(tmp .. "/in", input)
      cmd = cmd .. " < " .. H.q(tmp .. "/in")
    end
    local p = io.popen(cmd .. " 2>" .. H.q(tmp .. "/err"))
    local out = p:read("a")
    local _, _, code = p:close()
    local f = io.open(tmp .. "/err")
    local err = f:read("a")
    f:close()
    return out, err, code
  end

  it("prints one JSON object with --json, on every command", function()
    local cjson = require "cjson"
    local dir = tmp .. "/db"
    local function json(args, input)
      local out, err, code = run(args, input)
      assert.equal(0, code, err)
      assert.is_nil(out:find("\n.", 1), "one line: " .. out)
      return cjson.decode(out)
    end
    local r = json({ "init", dir, "--json" })
    assert.same({ path = dir, created = true, codec = "msgpack", values = 0 },
      r)
    r = json({ "append", dir, "--json" }, '{"type":"post"}\n{"type":"x"}\n')
    assert.same({ last = 1, appended = 2 }, r)
    H.write(tmp .. "/types.lua", [[return { version = 1,
      map = function(v) return v.type, 1 end,
      reduce = function(a, n) return (a or 0) + n end }]])
    json({ "view", dir, "types", tmp .. "/types.lua", "get", "post" })
    r = json({ "status", dir, "--json" })
    assert.equal(1, r.since)
    r = json({ "verify", dir, "--json" })
    assert.is_true(r.storage.ok)
    assert.same({ { name = "types", ok = true, kind = "group", entries = 2,
      since = 1 } }, r.views)
    r = json({ "rebuild", dir, "--json" })
    assert.same({ "types" }, r.rebuilt)
    assert.equal(2, r.values)
    r = json({ "backup", dir, tmp .. "/copy", "--json" })
    assert.equal(1, r.since)
    assert.equal(tmp .. "/copy", r.path)
    r = json({ "drop", tmp .. "/copy", "types", "--json" })
    assert.same({ path = tmp .. "/copy", dropped = "types" }, r)
    r = json({ "init", dir, "--json" })
    assert.is_false(r.created)
    assert.equal(2, r.values)
  end)

  it("lists --json in every command's help, with what it changes",
    function()
      for _, name in ipairs({ "init", "append", "get", "cat", "status",
        "view", "rebuild", "verify", "backup", "drop", "shell" }) do
        local out, err, code = run({ name, "--help" })
        assert.equal(0, code, err)
        local line = out:match("\n  %-%-json +([^\n]+)")
        assert.truthy(line, name .. " --help: " .. out)
      end
    end)

  it("status --help shows --watch as the parser takes it", function()
    local out = run({ "status", "--help" })
    assert.truthy(out:find("[--watch [--interval S]]", 1, true), out)
    local dir = tmp .. "/db"
    run({ "init", dir })
    local _, err, code = run({ "status", dir, "--watch", "2" })
    assert.equal(2, code) -- SECONDS is not an argument of --watch
    assert.truthy(err:find("too many arguments", 1, true), err)
  end)

  it("status --check fails for a failed view or one lagging too far",
    function()
      local dir = tmp .. "/db"
      run({ "init", dir })
      run({ "append", dir }, '{"n":1}\n{"n":2}\n')
      H.write(tmp .. "/ok.lua", [[return { version = 1, initial = 0,
        reduce = function(t, v) return t + v.n end }]])
      run({ "view", dir, "ok", tmp .. "/ok.lua" })
      local out, err, code = run({ "status", dir, "--check" })
      assert.equal(0, code, err)
      -- a lag: values the view has not seen (no writer keeps it up)
      run({ "append", dir }, '{"n":3}\n{"n":4}\n{"n":5}\n')
      _, err, code = run({ "status", dir, "--check", "--max-lag", "2" })
      assert.equal(1, code)
      assert.truthy(err:find("^flume: check: view 'ok' lags 3 values " ..
        "behind the log %(more than 2%)\n$"), err)
      _, err, code = run({ "status", dir, "--check", "--max-lag", "3" })
      assert.equal(0, code, err)
      -- a failed view: its error, stored by the writer it failed in
      H.write(tmp .. "/bad.lua", [[return { version = 1, initial = 0,
        reduce = function(t, v) error("bad " .. v.n) end }]])
      run({ "view", dir, "bad", tmp .. "/bad.lua" })
      out, err, code = run({ "status", dir, "--check", "--json" })
      assert.equal(1, code)
      assert.truthy(err:find("^flume: check: view 'bad' failed at seq 0: "),
        err)
      assert.falsy(err:find("failed.*failed"), err)
      local st = require("cjson").decode(out)
      assert.equal(1, #st.problems)
      _, err, code = run({ "status", dir, "--max-lag", "1" })
      assert.equal(2, code)
    end)

  it("exits 130 on Ctrl-C", function()
    local dir = tmp .. "/db"
    run({ "init", dir })
    local lines = {}
    for i = 1, 200000 do lines[i] = '{"i":' .. i .. '}' end
    H.write(tmp .. "/big", table.concat(lines, "\n") .. "\n")
    local pidpath = tmp .. "/pid"
    -- a slow reader of its input keeps it busy; Ctrl-C ends it
    local p = io.popen("{ while read -r l; do printf '%s\\n' \"$l\"; " ..
      "sleep 0.0002; done < " .. H.q(tmp .. "/big") .. "; } | sh -c " ..
      H.q("echo $$ > " .. H.q(pidpath) .. "; exec " ..
        H.flume_command({ "append", dir, "--batch", "10" })) ..
      " 2>" .. H.q(tmp .. "/err") .. "; echo $? > " .. H.q(tmp .. "/code"))
    for _ = 1, 500 do
      local f = io.open(pidpath)
      if f then f:close() break end
      os.execute("sleep 0.01")
    end
    os.execute("sleep 0.5; kill -INT $(cat " .. H.q(pidpath) .. ")")
    p:close()
    local f = io.open(tmp .. "/code")
    local code = f and f:read("n")
    if f then f:close() end
    local e = io.open(tmp .. "/err")
    local err = e and e:read("a") or ""
    if e then e:close() end
    assert.equal(130, code, err)
  end)
end)

describe("flume shell", function()
  local dir
  before_each(function()
    fresh_tmp()
    dir = tmp .. "/db"
    H.write(tmp .. "/types.lua", [[return { version = 1,
      map = function(v) return v.type, 1 end,
      reduce = function(a, n) return (a or 0) + n end }]])
    os.execute(H.flume_command({ "init", dir }) .. " >/dev/null")
    os.execute(H.flume_command({ "view", dir, "types", tmp .. "/types.lua" })
      .. " >/dev/null")
  end)
  after_each(function() H.rm(tmp) end)

  it("runs Lua lines with db open and the stored views mounted", function()
    H.write(tmp .. "/in", 'db:append({ type = "post" })\n' ..
      'db.types:get("post")\nx = 1 +\ndb:get(0)\nerror("boom")\n' ..
      '1, "two", {3}\n.quit\ndb:get(0)\n')
    local p = io.popen(H.flume_command({ "shell", dir }) .. " < " ..
      H.q(tmp .. "/in") .. " 2>" .. H.q(tmp .. "/err"))
    local out = p:read("a")
    assert.is_true(p:close())
    assert.equal('0\n1\n{"type":"post"}\n1\n"two"\n[3]\n', out)
    local f = io.open(tmp .. "/err")
    local err = f:read("a")
    f:close()
    assert.truthy(err:find("error: shell:1: unexpected symbol", 1, true), err)
    assert.truthy(err:find("error: shell:1: boom", 1, true), err)
  end)

  it("is a prompt under a real terminal (tmux)", function()
    local session = "flume-shell-" .. tostring(os.time()) .. math.random(1e6)
    local function tmux(args)
      local p = io.popen("tmux " .. args .. " 2>&1")
      local o = p:read("a")
      p:close()
      return o
    end
    tmux("new-session -d -s " .. session .. " -x 120 -y 20 " ..
      H.q(H.flume_command({ "shell", dir })))
    local function screen_has(text)
      for _ = 1, 300 do
        local s = tmux("capture-pane -p -t " .. session)
        if s:find(text, 1, true) then return s end
        os.execute("sleep 0.02")
      end
      return tmux("capture-pane -p -t " .. session)
    end
    local s = screen_has("flume> ")
    assert.truthy(s:find("flume shell on " .. dir, 1, true), s)
    assert.truthy(s:find("views: types", 1, true), s)
    tmux("send-keys -t " .. session .. " 'db:append({ type = \"like\" })' Enter")
    -- the next line is typed only once this one has been answered: typed
    -- ahead, the terminal (cooked mode) would echo it before the answer
    s = screen_has('type = "like" })\n0\nflume>')
    assert.truthy(s:find('type = "like" })\n0\nflume>', 1, true), s)
    tmux("send-keys -t " .. session .. " 'db.types:get(\"like\")' Enter")
    s = screen_has('db.types:get("like")\n1\nflume>')
    assert.truthy(s:find('db.types:get("like")\n1\nflume>', 1, true), s)
    -- Ctrl-C cancels the line being typed; the prompt goes on
    tmux("send-keys -t " .. session .. " 'db:get(' C-c")
    tmux("send-keys -t " .. session .. " '40 + 2' Enter")
    s = screen_has("\n42\nflume>")
    assert.truthy(s:find("\n42\nflume>", 1, true), s)
    tmux("send-keys -t " .. session .. " C-d")
    for _ = 1, 300 do
      if not tmux("has-session -t " .. session):find("^$") then break end
      os.execute("sleep 0.02")
    end
    tmux("kill-session -t " .. session) -- ended already, or ends now
  end)
end)

describe("flume shell with input that is not a terminal", function()
  it("ends with 130 on Ctrl-C", function()
    local tmp = H.tmpdir()
    local dir = tmp .. "/db"
    os.execute(H.flume_command({ "init", dir }) .. " >/dev/null")
    local pidpath, codepath = tmp .. "/pid", tmp .. "/code"
    -- its input stays open (sleep) and says nothing: it waits at its read
    local feedpid = tmp .. "/feedpid"
    local shell = "sh -c " .. H.q("echo $$ > " .. H.q(pidpath) .. "; exec " ..
      H.flume_command({ "shell", dir })) .. " 2>/dev/null; echo $? > " ..
      H.q(codepath)
    local p = io.popen("( sh -c " .. H.q("echo $$ > " .. H.q(feedpid) ..
      "; exec sleep 30") .. " | sh -c " .. H.q(shell) .. " ) 2>/dev/null")
    for _ = 1, 500 do
      local f = io.open(pidpath)
      if f then f:close() break end
      os.execute("sleep 0.01")
    end
    os.execute("sleep 0.3; kill -INT $(cat " .. H.q(pidpath) .. ")")
    local code
    for _ = 1, 500 do
      local f = io.open(codepath)
      code = f and f:read("n")
      if f then f:close() end
      if code then break end
      os.execute("sleep 0.01")
    end
    os.execute("kill $(cat " .. H.q(feedpid) .. ") 2>/dev/null")
    p:close()
    H.rm(tmp)
    assert.equal(130, code)
  end)
end)

describe("flume status --watch", function()
  it("refreshes lag and rate in place beside a writer, Ctrl-C ends it " ..
     "with 130", function()
    local tmp = H.tmpdir()
    local dir = tmp .. "/db"
    H.write(tmp .. "/types.lua", [[return { version = 1,
      map = function(v) return v.type, 1 end,
      reduce = function(a, n) return (a or 0) + n end }]])
    H.write(tmp .. "/writer.lua", [=[
local flume = require "flume"
local db = flume.open(arg[1])
db:use("types", arg[2])
local stop = arg[3]
repeat
  local batch = {}
  for i = 1, 50 do batch[i] = { type = "t" .. i % 3 } end
  db:append(batch, { batch = true })
  flume.sleep(0.02)
  local f = io.open(stop)
  if f then f:close() end
until f
db:close()
]=])
    local stop = tmp .. "/stop"
    local writer = io.popen(H.lua_command(tmp .. "/writer.lua", dir,
      tmp .. "/types.lua", stop) .. " 2>&1")
    local session = "flume-watch-" .. os.time() .. math.random(1e6)
    local function tmux(args)
      local p = io.popen("tmux " .. args .. " 2>&1")
      local o = p:read("a")
      p:close()
      return o
    end
    local code = tmp .. "/code"
    -- the folder exists once the writer made it
    for _ = 1, 300 do
      if io.open(dir .. "/data.mdb") then break end
      os.execute("sleep 0.02")
    end
    tmux("new-session -d -s " .. session .. " -x 120 -y 20 " ..
      H.q(H.flume_command({ "status", dir, "--watch", "--interval", "0.2" }) ..
        "; echo $? > " .. H.q(code)))
    local screen
    for _ = 1, 500 do
      screen = tmux("capture-pane -p -t " .. session)
      local rate = screen:match("types +group +%d+ +%d+ +(%d+) +running")
      if rate and tonumber(rate) > 0 then break end
      os.execute("sleep 0.02")
    end
    assert.truthy(screen:match("types +group +%d+ +%d+ +[1-9]%d* +running"),
      screen)
    -- in place: one header on the screen, however many refreshes
    local _, headers = screen:gsub("name +kind +since", "")
    assert.equal(1, headers, screen)
    tmux("send-keys -t " .. session .. " C-c")
    local got
    for _ = 1, 300 do
      -- the file exists a moment before the shell's echo has written it
      local f = io.open(code)
      if f then got = f:read("n"); f:close() end
      if got then break end
      os.execute("sleep 0.02")
    end
    tmux("kill-session -t " .. session)
    H.write(stop, "")
    writer:read("a")
    writer:close()
    assert.equal(130, got)
    H.rm(tmp)
  end)
end)
