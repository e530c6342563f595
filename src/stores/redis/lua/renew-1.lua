--[[
  Renew a lease: set leaseUntil to now + lease, only if the token still holds the
  in-progress record. Retention grows to cover the new lease when it would end sooner.

  KEYS[1]  the record hash, <prefix>:{<id>}
  ARGV[1]  fencing token
  ARGV[2]  lease length, ms

  Output
    leaseUntil  renewed
    nil         the lease was lost: completed, taken over, or gone
]]
if redis.replicate_commands then redis.replicate_commands() end
local rcall = redis.call
local key = KEYS[1]
local t = rcall('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local r = rcall('HMGET', key, 's', 't', 'e')
if r[1] ~= 'p' or r[2] ~= ARGV[1] or tonumber(r[3]) <= now then return false end

local leaseUntil = now + tonumber(ARGV[2])
rcall('HSET', key, 'l', string.format('%d', leaseUntil))
if leaseUntil > tonumber(r[3]) then
  rcall('HSET', key, 'e', string.format('%d', leaseUntil))
  rcall('PEXPIREAT', key, string.format('%d', leaseUntil))
end
return leaseUntil
