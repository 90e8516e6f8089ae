-- Hostile scripts: each attack runs in a view (in its map, its reduce, its
-- top level and a method) beside good views, in a child process killed if
-- it hangs. The good views' answers and the appends must be unaffected,
-- the attacking view must fail with a clear error (or be harmless), and
-- the process must close and exit normally.
local H = require "helpers.db"
local attacks = require "helpers.hostile_attacks"

local TIMEOUT = 60 -- seconds before a hung child is killed

local function run(name, where)
  local p = io.popen("timeout -s KILL " .. TIMEOUT .. " " ..
    H.lua_command("spec/helpers/hostile_child.lua", name, where) .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

describe("a hostile view", function()
  for _, a in ipairs(attacks.all()) do
    for _, where in ipairs(a.places or attacks.places) do
      it(a.name .. " in " .. where .. " leaves the rest alone", function()
        local out, code = run(a.name, where)
        assert(code == 0, "child exited with " .. tostring(code) ..
          (code == 137 and " (killed: it hung)" or "") .. ":\n" .. out)
        assert(out:find("good: after a rebuild\n", 1, true), out)
        assert(out:find("closed\n", 1, true), out)
        if a.expect then
          -- the error is in use (top level), the method call, or the view
          local seen = false
          for line in out:gmatch("[^\n]+") do
            if line:find(a.expect) and
              line:find("^[a-z]+: flume: E[A-Z]+: ") then
              seen = true
            end
          end
          assert(seen, "no error matching '" .. a.expect .. "':\n" .. out)
        end
        assert(not out:find("pwned"), out)
      end)
    end
  end
end)
