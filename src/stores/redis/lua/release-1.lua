--[[
  Release a record: delete it while it is in progress, only if the token still holds it.
  Wakes waiters by publishing 'r' on the channel named like the key.

  KEYS[1]  the record hash, <prefix>:{<id>}
  ARGV[1]  fencing token
  ARGV[2]  notification command: 'PUBLISH', 'SPUBLISH' or '' (none)

  Output
    1  released
    0  fenced off: completed, taken over, or gone
]]
if redis.replicate_commands then redis.replicate_commands() end
local rcall = redis.call
local key = KEYS[1]
local t = rcall('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local r = rcall('HMGET', key, 's', 't', 'e')
if r[1] ~= 'p' or r[2] ~= ARGV[1] or tonumber(r[3]) <= now then return 0 end

rcall('DEL', key)
if ARGV[2] == 'PUBLISH' or ARGV[2] == 'SPUBLISH' then rcall(ARGV[2], key, 'r') end
return 1
