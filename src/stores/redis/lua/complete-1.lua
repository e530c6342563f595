--[[
  Complete a record: store the outcome and keep the record until now + ttl, only if the
  token still holds it. Completing again with the same token answers 1 and changes nothing.
  Wakes waiters by publishing 'c' on the channel named like the key, when a claim marked the
  record awaited. Sets d = now (completed at); b (created at) and h (scope hash) stay.

  KEYS[1]  the record hash, <prefix>:{<id>}
  ARGV[1]  fencing token
  ARGV[2]  outcome
  ARGV[3]  outcome encoding: '' as produced, 'j' JSON-escaped (not well-formed UTF-16)
  ARGV[4]  retention, ms
  ARGV[5]  notification command: 'PUBLISH', 'SPUBLISH' or '' (none)

  Output
    1  completed (now or before, by this token)
    0  fenced off: another holder took over, or the record is gone
]]
-- '' marks a released record: nobody holds it, so an empty token never acts
if ARGV[1] == '' then return 0 end
if redis.replicate_commands then redis.replicate_commands() end
local rcall = redis.call
local key = KEYS[1]
local t = rcall('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local r = rcall('HMGET', key, 's', 't', 'e', 'w')
if not r[1] or tonumber(r[3]) <= now or r[2] ~= ARGV[1] then return 0 end
if r[1] == 'c' then return 1 end

local expiresAt = string.format('%d', now + tonumber(ARGV[4]))
rcall('HSET', key, 's', 'c', 'o', ARGV[2], 'x', ARGV[3], 'l', '0', 'e', expiresAt,
  'd', string.format('%d', now))
rcall('PEXPIREAT', key, expiresAt)
if r[4] and (ARGV[5] == 'PUBLISH' or ARGV[5] == 'SPUBLISH') then rcall(ARGV[5], key, 'c') end
return 1
