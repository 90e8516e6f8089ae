-- The `sqlite_lua` baseline: SQLite as a Lua user has it today, through
-- LuaSQL (Debian: lua-sql-sqlite3) with lua-cjson for the values, on the
-- table of bench/sqlite_bench.c (log(seq INTEGER PRIMARY KEY, value TEXT),
-- WAL, synchronous=FULL). LuaSQL has no prepared statements: each
-- statement is SQL text. One measurement per run, printed as
-- "<row> <values per second>"; run with bench/build/lua.sh (flume only
-- for its clock and the data set's values).
--
--   append_batch  DIR N   the data set's N values (Lua tables, built
--                         untimed, as flume's append_batch) encoded with
--                         cjson.encode and INSERTed, a transaction per 1000
--   get_random    DIR N   N SELECTs by seq at random seqs (the order of the
--                         other get_random rows), each value decoded with
--                         cjson.decode, its .seq checked
--   stream_scan   DIR     SELECT ... ORDER BY seq: each row fetched, its
--                         value decoded, handed to a Lua `for` loop
--   rebuild_group DIR     the values per author: SELECT json_extract(value,
--                         '$.author'), count(*) ... GROUP BY, every row
--
-- The database is DIR/log.sqlite; the read rows read the one
-- `sqlite_bench append_batch` wrote.
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local flume = require "flume"
local data = require "data"
local luasql = require "luasql.sqlite3"
local cjson = require "cjson"

local clock = flume.core.hrtime
local row, dir = arg[1], arg[2]

local function report(name, n, secs)
  print(string.format("%s %.0f", name, n / secs))
end

local env = assert(luasql.sqlite3())
local conn

--- Runs a statement that returns no rows.
local function exec(sql)
  local r = assert(conn:execute(sql))
  if type(r) == "userdata" then r:close() end
end

local function connect()
  os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  conn = assert(env:connect(dir .. "/log.sqlite"))
  exec("PRAGMA journal_mode=WAL")
  exec("PRAGMA synchronous=FULL")
end

--- The number of values in the table (not timed).
local function count()
  local cur = assert(conn:execute("SELECT count(*) FROM log"))
  local n = math.tointeger(tonumber(cur:fetch()))
  cur:close()
  return n
end

local function append_batch(n)
  exec("CREATE TABLE log(seq INTEGER PRIMARY KEY, value TEXT)")
  local encode, format = cjson.encode, string.format
  local secs = 0
  for first = 0, n - 1, 1000 do
    local batch = data.values(first, math.min(1000, n - first))
    local t0 = clock()
    exec("BEGIN")
    for j, v in ipairs(batch) do
      exec(format("INSERT INTO log(seq, value) VALUES(%d, '%s')",
        first + j - 1, conn:escape(encode(v))))
    end
    exec("COMMIT")
    secs = secs + clock() - t0
  end
  assert(count() == n, "the table does not hold every value")
  report(row, n, secs)
end

local function get_random(n)
  local entries, random_seq = count(), data.random_seq
  local decode, execute = cjson.decode, conn.execute
  local t0 = clock()
  for i = 0, n - 1 do
    local seq = random_seq(i, entries)
    local cur = assert(execute(conn, "SELECT value FROM log WHERE seq = " ..
      seq))
    local v = decode(cur:fetch())
    cur:close()
    if v.seq ~= seq then error("wrong value at seq " .. seq) end
  end
  local t1 = clock()
  report(row, n, t1 - t0)
end

local function stream_scan()
  local entries, decode = count(), cjson.decode
  local n = 0
  local t0 = clock()
  local cur = assert(conn:execute("SELECT seq, value FROM log ORDER BY seq"))
  local function next_value()
    local seq, text = cur:fetch()
    if seq ~= nil then return seq, decode(text) end
  end
  for _, v in next_value do n = n + 1 end
  cur:close()
  local t1 = clock()
  assert(n == entries, "the scan missed values")
  report(row, n, t1 - t0)
end

local function rebuild_group()
  local entries = count()
  local total, groups = 0, 0
  local t0 = clock()
  local cur = assert(conn:execute("SELECT json_extract(value, '$.author') " ..
    "AS a, count(*) FROM log GROUP BY a"))
  for _, c in function() return cur:fetch() end do
    total, groups = total + tonumber(c), groups + 1
  end
  cur:close()
  local t1 = clock()
  assert(total == entries and groups > 0, "counted " .. total .. " values of "
    .. entries)
  report(row, entries, t1 - t0)
end

connect()
if row == "append_batch" then append_batch(assert(tonumber(arg[3])))
elseif row == "get_random" then get_random(assert(tonumber(arg[3])))
elseif row == "stream_scan" then stream_scan()
elseif row == "rebuild_group" then rebuild_group()
else
  io.stderr:write("sqlite_lua: unknown row ", tostring(row), "\n")
  os.exit(2)
end
conn:close()
env:close()
