-- The two doors read the same views the same way: the C API's reads
-- (spec/c/tool_view_dump.c) and the Lua API's, on the same database, give
-- the same answers — whole ranges, reverse and limit, bounded ranges, get
-- of every key, a reduce view's state — and while a view catches up, every
-- read without waiting, from C and from Lua, is exactly the model's view
-- at the since the view's status gave (spec/helpers/model.lua).
--
-- FLUME_SEED replays a run; FLUME_SOAK=N runs N seeds.
local flume = require "flume"
local core = require "flume.core"
local H = require "spec.helpers.db"
local M = require "spec.helpers.model"

local tool = (os.getenv("FLUME_BUILD_DIR") or "build") ..
  "/spec/tool_view_dump"

local function scripts(version)
  return {
    types = ([[
return { version = %d,
  map = function(v) if v.skip then return nil end return v.type, v.n end,
  reduce = function(acc, n) return (acc or 0) + n end }]]):format(version),
    authors = ([[
return { version = %d,
  map = function(v) return { v.author, { v.type, v.n %% 3 } } end }]]):format(version),
    total = ([[
return { version = %d, initial = { count = 0, sum = 0 },
  reduce = function(s, v) s.count = s.count + 1; s.sum = s.sum + v.n; return s end }]]):format(version),
  }
end

local NAMES = { "authors", "total", "types" }

local function values(seed, n)
  local rnd = seed
  local function rand(k)
    rnd = (rnd * 1103515245 + 12345) % 2147483648
    return rnd % k + 1
  end
  local out = {}
  for i = 1, n do
    out[i] = { type = "t" .. rand(30), author = "@" .. rand(150),
               n = rand(1000) - 100, skip = rand(9) == 1 or nil }
  end
  return out
end

local function unhex(s)
  if s == "-" then return nil end
  return (s:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function dec(s)
  local b = unhex(s)
  if b == nil then return nil end
  return core.decode(b)
end

local function write_scripts(dir, set)
  local args = {}
  for _, name in ipairs(NAMES) do
    local path = dir .. "/" .. name .. ".lua"
    H.write(path, set[name])
    args[#args + 1] = H.q(name .. "=" .. path)
  end
  return table.concat(args, " ")
end

local function run_tool(dir, mode, args)
  local p = assert(io.popen(tool .. " " .. H.q(dir .. "/db") .. " " .. mode ..
    " " .. args .. " 2>&1"))
  local lines = {}
  for line in p:lines() do lines[#lines + 1] = line end
  local ok = p:close()
  assert(ok, "tool_view_dump failed:\n" .. table.concat(lines, "\n"))
  return lines
end

-- Parses the tool's lines into { [name] = { kind, since, state, entries,
-- rev, gets, ranges, rranges } } and the list of snapshots.
local function parse(lines)
  local views, snaps = {}, {}
  local function view(name)
    views[name] = views[name] or { entries = {}, rev = {}, gets = {},
      ranges = {}, rranges = {} }
    return views[name]
  end
  local function entry(k, x)
    local seq = math.tointeger(tonumber(x))
    return { dec(k), seq or dec(x) }
  end
  for _, line in ipairs(lines) do
    local w = {}
    for s in line:gmatch("%S+") do w[#w + 1] = s end
    local tag, name = w[1], w[2]
    if tag == "view" then
      view(name).kind, view(name).since = w[3], tonumber(w[4])
    elseif tag == "state" then
      view(name).state = dec(w[3])
    elseif tag == "entry" or tag == "rev" then
      local t = view(name)[tag == "entry" and "entries" or "rev"]
      t[#t + 1] = entry(w[3], w[4])
    elseif tag == "get" then
      local t = view(name).gets
      t[#t + 1] = { dec(w[3]), dec(w[4]) }
    elseif tag == "range" or tag == "rrange" then
      local t = view(name)[tag .. "s"]
      local i = tonumber(w[3])
      t[i] = t[i] or {}
      t[i][#t[i] + 1] = entry(w[4], w[5])
    elseif tag == "snap" then
      local s = { name = name, since = tonumber(w[3]) }
      if w[4] == nil then
        s.entries = {} -- an empty range
      elseif not w[4]:find("=") then
        s.state = dec(w[4]) -- a reduce view's state, "-" for none
      else
        s.entries = {}
        for k, x in w[4]:gmatch("([^,=]+)=([^,]+)") do
          s.entries[#s.entries + 1] = entry(k, x)
        end
      end
      snaps[#snaps + 1] = s
    elseif line ~= "" then
      error("tool_view_dump: " .. line)
    end
  end
  return views, snaps
end

-- What the Lua API reads of the same views, in the tool's shapes.
local function lua_reads(db)
  local out = {}
  for _, name in ipairs(NAMES) do
    local v = db[name]
    local st = v:status()
    local r = { kind = st.kind, since = st.since, entries = {}, rev = {},
      gets = {}, ranges = {}, rranges = {} }
    out[name] = r
    if st.kind == "reduce" then
      r.state = v:get()
    else
      local index = st.kind == "index"
      local function collect(into, opts)
        for k, x in v:read(opts) do into[#into + 1] = { k, x } end
      end
      collect(r.entries, {})
      collect(r.rev, { reverse = true, limit = 7 })
      local keys = {}
      for _, e in ipairs(r.entries) do
        if #keys == 0 or not M.same(keys[#keys], e[1]) then
          keys[#keys + 1] = e[1]
        end
      end
      for _, k in ipairs(keys) do
        local g = v:get(k)
        if index then -- the seqs, as C gives them (Lua gives the values)
          g = {}
          for _, e in ipairs(r.entries) do
            if M.same(e[1], k) then g[#g + 1] = e[2] end
          end
        end
        r.gets[#r.gets + 1] = { k, g }
      end
      for i = 1, #keys - 3, 5 do
        r.ranges[i - 1], r.rranges[i - 1] = {}, {}
        collect(r.ranges[i - 1], { gte = keys[i], lt = keys[i + 3] })
        collect(r.rranges[i - 1], { gt = keys[i], lte = keys[i + 3],
          reverse = true })
      end
      -- index gets from Lua give values: check them against the log
      if index then
        for _, k in ipairs(keys) do
          local got = v:get(k)
          local seqs = {}
          for _, e in ipairs(r.entries) do
            if M.same(e[1], k) then seqs[#seqs + 1] = e[2] end
          end
          assert(#got == #seqs, "index get of a key gives one value per seq")
          for i, s in ipairs(seqs) do
            assert(M.same(got[i], db:get(s)), "index get gives the values")
          end
        end
      end
    end
  end
  return out
end

-- The model's view at a since, each computed once.
local function modeller(model)
  local cache = {}
  return function(src, since)
    local key = src .. "\0" .. since
    if cache[key] == nil then
      local view = model:view(src, since)
      cache[key] = { view.kind == "reduce" and view.state or view.entries }
    end
    return cache[key][1]
  end
end

local function check_seed(seed, n)
  local tmp = H.tmpdir()
  local dir = tmp .. "/db"
  local ok, err = pcall(function()
    local vals = values(seed, n)
    local model = M.new()
    for _, v in ipairs(vals) do model:append(v) end
    local model_entries = modeller(model)
    local v1 = scripts(1)
    local args1 = write_scripts(tmp, v1)

    -- Lua: the values, then the views catching up, read without waiting
    -- (each read equal to the model at the since it saw) and then gated.
    local db = flume.open(dir, { codec = "msgpack" })
    db:append(vals, { batch = true })
    for _, name in ipairs(NAMES) do db:use(name, tmp .. "/" .. name .. ".lua") end
    -- what each read without waiting gave, once per since; checked after
    local lua_snaps, last = {}, {}
    repeat
      local done = true
      for _, name in ipairs(NAMES) do
        local v = db[name]
        local st = v:status()
        if st.ready then
          local got
          if st.kind == "reduce" then
            got = v:get({ wait = false })
          else
            got = {}
            for k, x in v:read({ wait = false }) do got[#got + 1] = { k, x } end
          end
          -- a read sees the view at the since the view has after it (the
          -- first chunk brings it up to the checkpoint it saw)
          local since = v:status().since
          if last[name] ~= since then
            last[name] = since
            lua_snaps[#lua_snaps + 1] = { name = name, since = since,
              got = got }
          end
        end
        done = done and st.ready and st.since == db.since
      end
      if not done then flume.sleep(0.002) end
    until done
    local lua = lua_reads(db)
    db:close()
    for _, sn in ipairs(lua_snaps) do
      local want = model_entries(v1[sn.name], sn.since)
      assert(M.same(sn.got, want), ("Lua read of %s at since %d differs " ..
        "from the model: %s, the model says %s"):format(sn.name, sn.since,
        M.show(sn.got), M.show(want)))
    end

    -- C, on the same database and the same views: the same answers.
    local c = parse(run_tool(tmp, "final", args1))
    for _, name in ipairs(NAMES) do
      assert(M.same(c[name], lua[name]), ("C and Lua reads of %s differ:\n" ..
        "C   %s\nLua %s"):format(name, M.show(c[name]):sub(1, 1500),
        M.show(lua[name]):sub(1, 1500)))
    end

    -- C while the views rebuild (version 2): every read the model's at
    -- the since it saw, and the end equal to Lua's reads.
    local v2 = scripts(2)
    local c2, snaps = parse(run_tool(tmp, "catchup", write_scripts(tmp, v2)))
    for _, s in ipairs(snaps) do
      local want = model_entries(v2[s.name], s.since)
      local got = s.entries or s.state
      assert(M.same(got, want), ("C read of %s at since %d differs from " ..
        "the model"):format(s.name, s.since))
    end
    for _, name in ipairs(NAMES) do
      assert(M.same(c2[name], lua[name]), "C reads after the rebuild of " ..
        name .. " differ from Lua's")
    end
    print(("seed %d: %d values; %d Lua and %d C reads while catching up, " ..
      "each the model's"):format(seed, n, #lua_snaps, #snaps))
  end)
  H.rm(tmp)
  if not ok then
    error(("seed %d: %s\nreplay: FLUME_SEED=%d busted spec/c_reads_spec.lua")
      :format(seed, tostring(err), seed), 0)
  end
end

describe("C and Lua reads of views", function()
  it("agree with each other and with the model, also while catching up",
     function()
    local seeds = {}
    local fixed = tonumber(os.getenv("FLUME_SEED") or "")
    if fixed then
      seeds = { fixed }
    else
      local base = os.time()
      for i = 1, tonumber(os.getenv("FLUME_SOAK") or "") or 3 do
        seeds[i] = (base + i * 7919) % 2147483647
      end
    end
    -- one large run (a rebuild over many checkpoints), smaller others;
    -- smaller still under the sanitizers, which are ten times slower
    local large, small = 8000, 1500
    if H.sanitized() then large, small = 2000, 500 end
    for i, seed in ipairs(seeds) do
      check_seed(seed, i == 1 and large or small)
    end
  end)

end)
