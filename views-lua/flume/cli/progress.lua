--- Long operations: the progress bar on stderr, and Ctrl-C.
local core = require "flume.core"
local output = require "flume.cli.output"

local clock = core.hrtime
local stderr = io.stderr
local fmt = string.format
local fail, one_line = output.fail, output.one_line
local human_size, duration = output.human_size, output.duration

local M = {}

-- The bar ---------------------------------------------------------------------

local Progress = {}
Progress.__index = Progress

local DELAY = tonumber(os.getenv("FLUME_PROGRESS_DELAY") or "") or 1

--- A progress bar on stderr. `unit` is "values" (the default) or "bytes".
-- It stays silent unless stderr is a terminal and --quiet was not given,
-- and until the operation has run for a second.
function M.progress(ctx, label, unit)
  local tools = ctx.tools
  return setmetatable({
    label = label, unit = unit or "values", start = clock(), last = 0,
    shown = false, done = 0, total = nil, count = 0,
    enabled = not ctx.quiet and tools.isatty(2) and
      os.getenv("TERM") ~= "dumb",
    columns = tools.columns(2) or 80,
  }, Progress)
end

function Progress:draw(now, final)
  local elapsed = now - self.start
  local rate = elapsed > 0 and self.count / elapsed or 0
  local speed = self.unit == "bytes" and human_size(rate) .. "/s" or
    fmt("%.0f values/s", rate)
  local tail
  if final then
    tail = fmt("%s  in %s", speed, duration(elapsed))
  elseif self.total and self.total > 0 and self.done > 0 then
    local left = elapsed * (self.total - self.done) / self.done
    tail = fmt("%s  ETA %s", speed, duration(left))
  else
    tail = speed
  end
  local line
  local label = self.label
  if self.view then label = label .. " " .. self.view end
  if self.total then
    local frac = self.total > 0 and math.min(self.done / self.total, 1) or 1
    if final then frac = 1 end
    local pct = fmt("%3d%%", math.floor(frac * 100))
    -- the bar takes what the terminal's width leaves (10 to 30 columns)
    local width = self.columns - #label - #pct - #tail - 6
    if width > 30 then width = 30 end
    if width < 10 then width = 10 end
    local full = math.floor(frac * width + 0.5)
    line = fmt("%s [%s%s] %s  %s", label, ("#"):rep(full),
      (" "):rep(width - full), pct, tail)
  else
    local n = self.unit == "bytes" and human_size(self.count) or
      fmt("%d values", self.count)
    line = fmt("%s  %s  %s", label, n, tail)
  end
  -- never wider than the terminal: a wrapped line would not be redrawn in
  -- place (\r returns to the start of the last row only)
  if #line > self.columns - 1 then line = line:sub(1, self.columns - 1) end
  stderr:write("\r\27[K", line)
  if final then stderr:write("\n") end
  stderr:flush()
  self.shown, self.last = true, now
  M.on_line = not final and self or nil
end

--- Clears the line of a bar drawn and not finished (its next tick draws
-- it again), so that a line written on stderr (a view's message) is not
-- written over it.
function M.clear_line()
  if M.on_line then
    stderr:write("\r\27[K")
    M.on_line = nil
  end
end

--- Reports `done` of `total` (nil: unknown), `count` values (or bytes) so
-- far for the rate (default: done).
function Progress:update(done, total, count)
  self.done, self.total, self.count = done, total, count or done
  if not self.enabled then return end
  local now = clock()
  if now - self.start < DELAY or now - self.last < 0.1 then return end
  self:draw(now)
end

--- Ends the bar at 100%, if it showed or the work took long enough.
function Progress:finish()
  if not self.enabled then return end
  local now = clock()
  if self.shown or now - self.start >= DELAY then
    if self.total then self.done = self.total end
    self:draw(now, true)
  end
end

--- Ends the bar where it is (on an error).
function Progress:abort()
  if self.shown then stderr:write("\n") end
  if M.on_line == self then M.on_line = nil end
end

-- Waiting for views -----------------------------------------------------------

--- Runs `wait()` (which waits for views) with a progress bar over the
-- slowest of `views` (a list), counted from `from` (default: where they
-- are now). Also where an interrupt (Ctrl-C) is noticed while waiting.
function M.with_progress(ctx, label, views, wait, from)
  local tools = ctx.tools
  local slowest -- the view the bar follows: it names it
  local function lowest()
    local low, top = nil, -1
    slowest = nil
    for _, v in ipairs(views) do
      local s = v:status()
      top = s.log_since
      if not s.failed and (low == nil or s.since < low) then
        low, slowest = s.since, v._name
      end
    end
    return low or top, top
  end
  local p = M.progress(ctx, label)
  local function name()
    p.view = #views > 1 and slowest and "(" .. slowest .. ")" or slowest
  end
  local now = lowest()
  local base = from or now
  name() -- named from the start: a short run ends before the first tick
  local cancel
  local function tick()
    if tools.interrupted() then error("flume: interrupted", 0) end
    local low, top = lowest()
    if slowest then name() end
    p:update(low - base, top - base)
    cancel = core.timer(0.1, tick)
  end
  cancel = core.timer(0.1, tick)
  local ok, err = pcall(wait)
  cancel()
  if not ok then
    p:abort()
    error(err, 0)
  end
  local _, top = lowest()
  p:update(top - base, top - base)
  p:finish()
end

--- Waits for each view to catch up; returns { name = error } for those
-- that failed.
function M.catch_up(ctx, label, views)
  local list, errors = {}, {}
  for _, v in pairs(views) do list[#list + 1] = v end
  M.with_progress(ctx, label, list, function()
    for name, v in pairs(views) do
      local ok, err = pcall(v.ready, v)
      if not ok then
        if tostring(err):find("interrupted") then error(err, 0) end
        errors[name] = one_line(err)
      end
    end
  end)
  return errors
end

--- Ends the command if Ctrl-C was pressed (for loops that do not wait).
function M.check_interrupt(ctx)
  if ctx.tools.interrupted() then fail("interrupted") end
end

return M
