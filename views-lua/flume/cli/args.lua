--- The command line's arguments: options by a command's spec, and JSON
-- given as an argument or an input line.
local json = require "flume.json"
local output = require "flume.cli.output"

local usage = output.usage

local M = {}

-- Options every command takes.
local COMMON = {
  ["--help"] = "flag", ["-h"] = "--help",
  ["--quiet"] = "flag", ["-q"] = "--quiet",
  -- one JSON object of what the command did, for scripts (the commands
  -- that print values print JSON anyway)
  ["--json"] = "flag",
}

--- Splits args into options (by the command's spec) and positionals.
function M.parse_args(args, spec, first)
  local opts, pos = {}, {}
  local i, only_pos = first, false
  while i <= #args do
    local a = args[i]
    if only_pos or a == "-" or not a:find("^%-") or a:find("^%-%d") then
      pos[#pos + 1] = a
    elseif a == "--" then
      only_pos = true
    else
      local name, value = a:match("^(%-%-[^=]+)=(.*)$")
      name = name or a
      local kind = spec[name] or COMMON[name]
      if type(kind) == "string" and kind:find("^%-") then
        name, kind = kind, spec[kind] or COMMON[kind]
      end
      if kind == nil then usage("unknown option " .. a) end
      if kind == "flag" then
        if value then usage("option " .. name .. " takes no value") end
        opts[name:sub(3)] = true
      else
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then usage("option " .. name .. " needs a value") end
        end
        if kind == "int" then
          local n = math.tointeger(tonumber(value))
          if not n then
            usage("option " .. name .. " needs an integer, not " .. value)
          end
          value = n
        end
        if kind == "list" then
          local l = opts[name:sub(3)] or {}
          l[#l + 1] = value
          value = l
        end
        opts[name:sub(3)] = value
      end
    end
    i = i + 1
  end
  return opts, pos
end

--- Parses a line of JSON into a value for the log; raises a message
-- (without the "flume: " prefix, which the command adds).
function M.parse_json(line)
  local ok, v = pcall(json.decode, line)
  if not ok then
    error("bad JSON: " .. tostring(v):gsub("^flume: EINVAL: ", ""), 0)
  end
  return v
end

return M
