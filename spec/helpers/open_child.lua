-- Child process for the specs: tries to open the database in arg[1] for
-- writing; prints the outcome and exits 0 if it could, 1 if not.
local flume = require "flume"
local ok, err = pcall(flume.open, arg[1])
if ok then
  err:close()
  print("opened")
  os.exit(0)
end
print(err)
os.exit(1)
