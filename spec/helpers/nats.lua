-- Shared by the remote specs: nats-server processes on 127.0.0.1 with
-- ports the system picks, each with its own store folder, every step
-- bounded in time; only the processes started here are ever killed.
local flume = require "flume"
local H = require "helpers.db"

local N = {}

--- The nats-server binary, or nil.
function N.binary()
  for _, p in ipairs { "/usr/sbin/nats-server", "/usr/bin/nats-server",
    "/usr/local/bin/nats-server" } do
    local f = io.open(p)
    if f then
      f:close()
      return p
    end
  end
  local p = io.popen("command -v nats-server 2>/dev/null")
  local path = p:read("l")
  p:close()
  return path ~= "" and path or nil
end

--- Why the remote specs cannot run here, or nil when they can.
function N.missing()
  if not require("flume.core").remote then
    return "this flume was built without libnats (install libnats-dev)"
  end
  if not N.binary() then return "nats-server is not installed" end
  return nil
end

--- The one test of a remote spec that cannot run here: pending, or, in
-- CI (which installs libnats-dev and nats-server: the README's test
-- command), a failure, so that the cluster tests always run there. `it`
-- and `pending` are the spec's (busted's functions are not globals of a
-- module the spec requires).
function N.cannot_run(missing, it, pending)
  it("needs libnats and nats-server", function()
    if os.getenv("CI") == "true" then
      error("the remote log is not tested: " .. missing)
    end
    pending("skipped: " .. missing)
  end)
end

--- Whether process `pid` still runs (a zombie counts as gone).
function N.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return not stat:match("^%d+ %b() Z")
end

local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- Waits until pred() is true, running the loop, at most `seconds`;
-- raises naming `what` when it never is.
function N.wait(seconds, what, pred)
  local deadline = os.time() + seconds
  while not pred() do
    if os.time() > deadline then
      error("timed out after " .. seconds .. " s waiting for " .. what)
    end
    flume.sleep(0.02)
  end
end

--- Starts a JetStream server in a fresh folder; returns { pid, url, dir,
-- port }. `port` reuses a port (a restart); `cluster` = { name, port,
-- routes } makes it one of a cluster.
function N.start(dir, port, cluster)
  dir = dir or H.tmpdir()
  assert(os.execute("mkdir -p " .. H.q(dir)))
  local log = dir .. "/server.log"
  local extra = ""
  if cluster then
    extra = string.format(
      " -n %s --cluster_name flume_test --cluster nats://127.0.0.1:%d" ..
      " --routes %s", cluster.name, cluster.port,
      table.concat(cluster.routes, ","))
  end
  local cmd = string.format(
    "%s -js -a 127.0.0.1 -p %d -sd %s -l %s%s >/dev/null 2>&1 & echo $!",
    H.q(N.binary()), port or -1, H.q(dir .. "/store"), H.q(log), extra)
  local before = #read(log)
  local p = io.popen(cmd)
  local pid = tonumber(p:read("l"))
  p:close()
  assert(pid, "nats-server did not start")
  local s = { pid = pid, dir = dir, cluster = cluster }
  local ok, err = pcall(N.wait, 15, "nats-server to listen", function()
    local text = read(log):sub(before + 1)
    local found = text:match("Listening for client connections on " ..
      "127%.0%.0%.1:(%d+)")
    if found and text:find("Server is ready", 1, true) then
      s.port = tonumber(found)
      return true
    end
    return not N.alive(pid)
  end)
  if not ok or not s.port then
    N.stop(s)
    error("nats-server failed: " .. tostring(err) .. "\n" .. read(log))
  end
  s.url = "nats://127.0.0.1:" .. s.port
  return s
end

--- Starts a server stopped with N.stop again, on its ports and store.
function N.restart(s)
  local again = N.start(s.dir, s.port, s.cluster)
  s.pid = again.pid
end

--- A TCP port nobody on this machine listens on or uses now (picked at
-- random; a port the system picks cannot be known before a cluster's
-- servers start, and each names the others').
function N.free_port()
  local used = {}
  for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    local h = io.open(f)
    if h then
      for line in h:lines() do
        local port = line:match("^%s*%d+: %x+:(%x+) ")
        if port then used[tonumber(port, 16)] = true end
      end
      h:close()
    end
  end
  N.taken = N.taken or {}
  for _ = 1, 1000 do
    local port = math.random(20000, 60999)
    if not used[port] and not N.taken[port] then
      N.taken[port] = true
      return port
    end
  end
  error("no free port")
end

--- Three JetStream servers in one cluster, in folders under dir; returns
-- the list, each with `name` ("s1".."s3").
function N.cluster(dir)
  local routes, ports, servers = {}, {}, {}
  for i = 1, 3 do
    ports[i] = N.free_port()
    routes[i] = "nats://127.0.0.1:" .. ports[i]
  end
  for i = 1, 3 do
    local others = {}
    for j = 1, 3 do if j ~= i then others[#others + 1] = routes[j] end end
    local ok, s = pcall(N.start, dir .. "/s" .. i, N.free_port(),
      { name = "s" .. i, port = ports[i], routes = others })
    if not ok then
      for _, started in ipairs(servers) do N.stop(started) end
      error(s)
    end
    s.name = "s" .. i
    servers[i] = s
  end
  return servers
end

--- Kills a server this spec started (SIGKILL) and waits until it is gone.
function N.stop(s)
  if not s or not s.pid then return end
  os.execute("kill -9 " .. s.pid .. " 2>/dev/null")
  N.wait(10, "nats-server " .. s.pid .. " to exit",
    function() return not N.alive(s.pid) end)
  s.pid = nil
end

--- A stream name no test used before (names are never reused).
function N.stream(prefix)
  local r = io.open("/dev/urandom", "rb")
  local b = r:read(6)
  r:close()
  return (prefix or "T") .. "_" .. b:gsub(".", function(c)
    return string.format("%02x", c:byte())
  end)
end

return N
