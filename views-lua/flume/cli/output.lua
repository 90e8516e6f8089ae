--- The command's output: its errors (a message and an exit code), stdout,
-- and the formats of sizes, durations and tables.
local errors = require "flume.errors"

local stdout = io.stdout
local fmt, concat = string.format, table.concat

local M = {}

-- Errors ----------------------------------------------------------------------

M.Exit = {} -- metatable of the errors that end a command with a code

--- Ends the command: `flume: msg` on stderr, exit code `code` (default 1).
function M.fail(msg, code)
  error(setmetatable({ msg = msg, code = code or 1 }, M.Exit), 0)
end

--- Ends the command with the core's error `name` (see flume/errors.lua):
-- `flume: NAME: <the core's message>: detail`, exit code 1.
function M.fail_error(name, detail)
  M.fail((errors.message(name, detail):gsub("^flume: ", "", 1)))
end

--- Ends the command as bad usage (exit code 2).
function M.usage(msg) M.fail(msg, 2) end

--- A flume error string ("flume: ECODE: ...") or any other as one line.
function M.one_line(e)
  e = tostring(e):gsub("^flume: ", "")
  e = e:match("^(.-)\nstack traceback:") or e
  return (e:gsub("%s*\n%s*", "; "))
end

-- Output ----------------------------------------------------------------------

--- Writes to stdout; a reader that went away ends the command quietly.
function M.out(...)
  local ok, err = stdout:write(...)
  if not ok then
    if tostring(err):find("Broken pipe") then M.fail("", 0) end
    M.fail("cannot write the output: " .. tostring(err))
  end
end

-- Formatting ------------------------------------------------------------------

function M.human_size(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do
    n, i = n / 1024, i + 1
  end
  return i == 1 and fmt("%d B", n) or fmt("%.1f %s", n, units[i])
end

function M.duration(s)
  s = math.floor(s + 0.5)
  if s >= 3600 then
    return fmt("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60)
  end
  return fmt("%d:%02d", s // 60, s % 60)
end

--- Prints rows of cells in columns, each line led by `indent`.
function M.print_table(rows, indent)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, #cell)
    end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i == #row and cell or cell .. (" "):rep(widths[i] - #cell)
    end
    M.out(indent, concat(cells, "  "), "\n")
  end
end

return M
