-- The views of the crash-against-the-model spec and its child process:
-- script sources, shared so that both attach exactly the same scripts.
-- Among them a filtering group view, a group view whose reduce returns nil
-- (deleting its key), an index view with composite keys and nil, a reduce
-- view whose version the parent bumps, and two views that fail at one
-- chosen value.
local V = {}

--- The value the child appends as the i-th of run `run` (deterministic, so
-- the parent can check what it finds).
function V.value(run, i)
  local len = (i * 37 + run) % 200 + 1
  local types = { "post", "like", "follow", "reply" }
  return { run = run, i = i, len = len,
    data = string.rep(string.char(65 + i % 26), len),
    type = types[i % 4 + 1],
    author = i % 5 ~= 0 and "@" .. (i % 7) or nil,
    amount = i % 4 ~= 0 and i % 10 or nil }
end

--- Whether a value read back is the one appended.
function V.intact(v)
  if type(v) ~= "table" or math.type(v.run) ~= "integer" or
    math.type(v.i) ~= "integer" then
    return false
  end
  local w = V.value(v.run, v.i)
  for k, x in pairs(w) do if v[k] ~= x then return false end end
  for k in pairs(v) do if w[k] == nil then return false end end
  return true
end

--- The scripts by view name. fail = { run =, i =, i2 = }: the value at
-- which "bad" (a group view) and "badsum" (a reduce view) throw; version:
-- the version of "bumped".
function V.scripts(fail, version)
  return {
    types = [[return { version = 1,
  map = function(v)
    if v.type == 'like' then return nil end
    return v.type, 1
  end,
  reduce = function(acc, n) return (acc or 0) + n end }]],
    total = [[return { version = 1, initial = { sum = 0, count = 0 },
  map = function(v) return v.amount end,
  reduce = function(s, a)
    s.sum, s.count = s.sum + a, s.count + 1
    return s
  end }]],
    authors = [[return { version = 1,
  map = function(v, seq)
    if v.author == nil then return nil end
    return { v.author, { v.type, v.i % 3 } }
  end }]],
    toggle = [[return { version = 1,
  map = function(v, seq) return v.i % 7, 1 end,
  reduce = function(acc, n, key, seq)
    if acc then return nil end
    return seq
  end }]],
    bumped = string.format([[return { version = %d,
  map = function(v) if v.type == 'follow' then return nil end return v end,
  kind = 'reduce',
  reduce = function(n, v) return (n or 0) + 1 end }]], version),
    bad = string.format([[return { version = 1,
  map = function(v, seq)
    if v.run == %d and v.i == %d then error('bad value') end
    return v.author or 'none', v.amount
  end,
  reduce = function(acc, a) return (acc or 0) + (a or 0) end }]],
      fail.run, fail.i),
    badsum = string.format([[return { version = 1, initial = 0,
  reduce = function(s, v, seq)
    if v.run == %d and v.i == %d then error('bad sum') end
    return s + (v.amount or 0)
  end }]], fail.run, fail.i2),
  }
end

V.NAMES = { "types", "total", "authors", "toggle", "bumped", "bad", "badsum" }

return V
