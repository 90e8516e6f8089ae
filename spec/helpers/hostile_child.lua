-- Child process of the hostile-script spec: runs one attack (arg[1], a
-- name in helpers/hostile_attacks.lua) in a view beside two good views,
-- appends, checks the good views, rebuilds, checks again, closes, and
-- prints what it saw. The parent kills it if it hangs.
package.path = "spec/?.lua;" .. package.path
local flume = require "flume"
local attacks = require "helpers.hostile_attacks"

local name, where = arg[1], arg[2]
local attack = assert(attacks.find(name), "no attack " .. tostring(name))
local db = flume.open(nil, attack.opts)

-- Good views: one uses string methods (s:upper()), the other a reduce.
db:use("types", { version = 1,
  map = function(v) return v.type:upper(), 1 end,
  reduce = function(a, n) return (a or 0) + n end })
db:use("total", "views-lua/examples/total_amount.lua")

-- Resident memory of this process, in MiB.
local function rss()
  local f = assert(io.open("/proc/self/status"))
  local kb = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kb) / 1024
end
local rss_before = rss()

local ok, err = pcall(db.use, db, "bad", attacks.script(attack, where))
print("use: " .. (ok and "ok" or tostring(err)))

local TYPES = { "post", "like", "follow" }
local n = 0
local function append_some(k)
  local batch = {}
  for i = 1, k do
    n = n + 1
    batch[i] = { type = TYPES[n % 3 + 1], amount = n }
  end
  local last = db:append(batch, { batch = true })
  assert(last == n - 1, "append returned " .. tostring(last))
end

local function check(when)
  local want = { POST = 0, LIKE = 0, FOLLOW = 0 }
  local sum = 0
  for i = 1, n do
    local t = TYPES[i % 3 + 1]:upper()
    want[t] = want[t] + 1
    sum = sum + i
  end
  for t, c in pairs(want) do
    local got = db.types:get(t, { timeout = 120 })
    assert(got == c, when .. ": types " .. t .. " = " .. tostring(got) ..
      ", want " .. c)
  end
  local total = db.total:get({ timeout = 120 })
  assert(total.sum == sum and total.count == n, when .. ": total wrong")
  print("good: " .. when)
end

append_some(10)
if ok then
  if where == "method" then
    local mok, merr = pcall(function() return db.bad:m() end)
    print("method: " .. (mok and "ok" or tostring(merr)))
  end
  local gok, gerr
  if where == "map" then
    -- get of a group view needs a key; any error other than EVIEW is ours
    gok, gerr = pcall(function()
      return db.bad:get("x", { timeout = 120 })
    end)
  else
    -- a reduce view's get takes only its options
    gok, gerr = pcall(function() return db.bad:get({ timeout = 120 }) end)
  end
  print("bad: " .. (gok and "ok" or tostring(gerr)))
end
check("after the attack")
print(string.format("rss growth after the attack: %.0f MiB",
  rss() - rss_before))
if ok then
  -- replaced, a view's memory is returned too
  db:use("bad", "return { version = 2, reduce = function() return 1 end }")
end
print(string.format("rss growth after replacing it: %.0f MiB",
  rss() - rss_before))
append_some(10)
check("after more appends")
-- a rebuild runs the attack again, and may say the bad view failed
local rok, rerr = pcall(db.rebuild, db)
print("rebuild: " .. (rok and "ok" or tostring(rerr)))
check("after a rebuild")
if attack.after then attack.after(db) end
db:close()
print("closed")
os.exit(0)
