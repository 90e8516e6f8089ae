-- The view host's own pattern matcher (runtime/pattern.c) against the
-- real string library: random patterns and subjects go through
-- string.find, match, gmatch and gsub (every form of replacement) inside a
-- view, and the same calls run here, in the test's own Lua state, whose
-- string library is the oracle. FLUME_SOAK=1 runs many more cases.
local flume = require "flume"

-- Runs one case and describes its outcome as a string: the same code
-- runs here and in the view.
local RUN = [[
local function describe_all(ok, ...)
  if not ok then return "error" end
  local out = { tostring(select("#", ...)) }
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    out[#out + 1] = type(v) .. ":" .. tostring(v)
  end
  return table.concat(out, "|")
end
local REPL = {
  fn_upper = function(c, ...) return type(c) == "string" and c:upper() or c end,
  fn_nil = function() return nil end,
  fn_false = function() return false end,
  fn_num = function(c) return 42 end,
  fn_count = function(...) return select("#", ...) .. "" end,
  fn_bad = function() return {} end,
  tbl = { a = "A", b = 7, ab = false, ["1"] = "one", abc = "X" },
}
local function gm(s, p, init)
  local out = {}
  for a, b, c in string.gmatch(s, p, init) do
    out[#out + 1] = tostring(a) .. "," .. tostring(b) .. "," .. tostring(c)
    if #out > 50 then break end
  end
  return table.concat(out, ";")
end
return function(c)
  local op, s, p, init = c[1], c[2], c[3], c[4]
  if op == "find" then
    return describe_all(pcall(string.find, s, p, init, c[5]))
  elseif op == "match" then
    return describe_all(pcall(string.match, s, p, init))
  elseif op == "gmatch" then
    return describe_all(pcall(gm, s, p, init))
  else
    local repl = c[5]
    if REPL[repl] then repl = REPL[repl] end
    return describe_all(pcall(string.gsub, s, p, repl, c[6]))
  end
end
]]

local VIEW = "local run = (function() " .. RUN .. " end)()\n" .. [[
return { version = 1, reduce = function(s) return s end,
  methods = { run = { "sync", function(_, cases)
    local out = {}
    for i, c in ipairs(cases) do out[i] = run(c) end
    return out
  end } } }
]]

local oracle = assert(load(RUN))()

-- Random patterns from pieces, well formed most of the time.
local CLASSES = { "a", "b", "c", "x", ".", "%a", "%d", "%s", "%w", "%p",
  "%l", "%u", "%x", "%c", "%g", "%A", "%D", "%S", "%W", "%.", "%%", "%(",
  "[abc]", "[^a]", "[a-c]", "[%d_]", "[a-]", "[]a]", "[^]]", "[%a%s]",
  "[-x]", "[b-a]", "1", "(", ")", "-", "$", "^", "]" }
local QUANT = { "", "", "", "*", "+", "-", "?" }

local function random_pattern(r)
  local parts = {}
  if r(5) == 1 then parts[1] = "^" end
  local open = 0
  for _ = 1, r(0, 6) do
    local k = r(12)
    if k == 1 and open < 3 then
      parts[#parts + 1] = "("
      open = open + 1
    elseif k == 2 and open > 0 then
      parts[#parts + 1] = ")"
      open = open - 1
    elseif k == 3 then
      parts[#parts + 1] = "()"
    elseif k == 4 then
      parts[#parts + 1] = "%" .. r(1, 3) -- a back reference, maybe bad
    elseif k == 5 then
      parts[#parts + 1] = ({ "%b()", "%bab", "%b" })[r(3)]
    elseif k == 6 then
      parts[#parts + 1] = ({ "%f[%w]", "%f[%W]", "%f[a]", "%f[^a]", "%f" })[r(5)]
    else
      parts[#parts + 1] = CLASSES[r(#CLASSES)] .. QUANT[r(#QUANT)]
    end
  end
  while open > 0 and r(4) > 1 do
    parts[#parts + 1] = ")"
    open = open - 1
  end
  if r(6) == 1 then parts[#parts + 1] = "$" end
  if r(30) == 1 then parts[#parts + 1] = "%" end
  if r(30) == 1 then parts[#parts + 1] = "[a" end
  return table.concat(parts)
end

local SUBJECT = { "a", "b", "c", "x", "1", "2", " ", "(", ")", "_", "-",
  ".", "A", "B", "%", "$", "^", "]", "\0", "\n", "ab", "abc" }

local function random_subject(r)
  local parts = {}
  for i = 1, r(0, 14) do parts[i] = SUBJECT[r(#SUBJECT)] end
  return table.concat(parts)
end

local REPLS = { "fn_upper", "fn_nil", "fn_false", "fn_num", "fn_count",
  "fn_bad", "tbl", "<%0>", "%1-%2", "%%", "x%", "%a", "[%3]", "", "z" }

local function random_case(r)
  local s, p = random_subject(r), random_pattern(r)
  local init = ({ nil, nil, 1, 0, -1, -3, 2, 5, 100, -100 })[r(10)]
  local op = ({ "find", "match", "gmatch", "gsub" })[r(4)]
  if op == "find" then
    return { op, s, p, init or 1, r(4) == 1 }
  elseif op == "gsub" then
    local repl = REPLS[r(#REPLS)]
    if r(10) == 1 then repl = r(0, 9) end -- a number
    return { op, s, p, 1, repl, ({ nil, nil, 0, 1, 2, -1 })[r(6)] or 1e9 }
  end
  return { op, s, p, init or 1 }
end

describe("the view host's pattern matcher", function()
  local db
  before_each(function()
    db = flume.open()
    db:use("p", VIEW)
  end)
  after_each(function() db:close() end)

  it("gives what the string library gives, on random cases", function()
    local seed = tonumber(os.getenv("FLUME_SEED")) or os.time()
    local rounds = os.getenv("FLUME_SOAK") and 400 or 20
    math.randomseed(seed)
    local r = math.random
    local n, errors = 0, 0
    for _ = 1, rounds do
      local cases = {}
      for i = 1, 250 do cases[i] = random_case(r) end
      local got = db.p:run(cases)
      for i, c in ipairs(cases) do
        local want = oracle(c)
        if want == "error" then errors = errors + 1 end
        n = n + 1
        if got[i] ~= want then
          error(string.format("seed %d: %s(%q, %q, %s, %s, %s):\n  view:   %s\n" ..
            "  string: %s", seed, c[1], c[2], c[3], tostring(c[4]),
            tostring(c[5]), tostring(c[6]), got[i], want))
        end
      end
    end
    assert.is_true(n >= 5000 and errors < n / 2, n .. " cases, " ..
      errors .. " errors (seed " .. seed .. ")")
  end)

  it("gives the same on fixed cases of every form", function()
    local cases = {
      { "find", "hello world", "o w", 1, false },
      { "find", "hello world", "o", 6, false },
      { "find", "a.b", ".", 1, true },
      { "find", "abc", "", 10, false },
      { "find", "abc", "", 4, false },
      { "match", "key = value", "(%w+)%s*=%s*(%w+)", 1 },
      { "match", "  x", "()x()", 1 },
      { "match", "THE (quick) fox", "%f[%a]%a+", 1 },
      { "match", "f(a(b)c)d", "%b()", 1 },
      { "match", "aaa", "^(a-)%1$", 1 },
      { "match", "abcabc", "(abc)%1", 1 },
      { "gmatch", "one two  three", "%a+", 1 },
      { "gmatch", "abc", "", 1 },
      { "gmatch", "^a^a", "^a", 1 },
      { "gmatch", "k=v, a=b", "(%w+)=(%w+)", 3 },
      { "gsub", "hello world", "o", "0", 1e9 },
      { "gsub", "hello world", "(o)", "[%1%0%%]", 1 },
      { "gsub", "abc", "", "-", 1e9 },
      { "gsub", "abc", "%w", "fn_upper", 2 },
      { "gsub", "a b ab", "%w+", "tbl", 1e9 },
      { "gsub", "abc", "^a", "x", 1e9 },
      { "gsub", "abc", "()", "fn_count", 1e9 },
      { "gsub", "abc", "b", "fn_bad", 1e9 },
      { "gsub", "abc", "b", "%2", 1e9 },
      { "gsub", "abc", "(", "x", 1e9 },
    }
    local got = db.p:run(cases)
    for i, c in ipairs(cases) do
      assert.equal(oracle(c), got[i], c[1] .. " " .. c[3])
    end
  end)

  it("stops a backtracking pattern with the view's limit", function()
    db:use("bt", [[return { version = 1, reduce = function(s) return s end,
      methods = { go = { "sync", function()
        return string.find(("a"):rep(60), ("a-"):rep(20) .. "b")
      end } } }]])
    local ok, err = pcall(db.bt.go, db.bt)
    assert.is_false(ok)
    assert.matches("instruction limit exceeded", err)
  end)
end)
