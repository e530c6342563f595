--[[
  Renew a lease: set leaseUntil to now + lease, only if the token still holds the
  in-progress record. expiresAt (and the key expiry) moves by as much as leaseUntil does, so
  the retention margin after the lease stays what the claim made it. Every other field
  (b created at, h scope hash among them) stays.

  KEYS[1]  the record hash, <prefix>:{<id>}
  ARGV[1]  fencing token
  ARGV[2]  lease length, ms

  Output
    leaseUntil  renewed
    nil         the lease was lost: completed, taken over, or gone
]]
-- '' marks a released record: nobody holds it, so an empty token never acts
if ARGV[1] == '' then return false end
if redis.replicate_commands then redis.replicate_commands() end
local rcall = redis.call
local key = KEYS[1]
local t = rcall('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local r = rcall('HMGET', key, 's', 't', 'e', 'l')
if r[1] ~= 'p' or r[2] ~= ARGV[1] or tonumber(r[3]) <= now then return false end

local leaseUntil = now + tonumber(ARGV[2])
local expiresAt = string.format('%d', tonumber(r[3]) + leaseUntil - tonumber(r[4]))
rcall('HSET', key, 'l', string.format('%d', leaseUntil), 'e', expiresAt)
rcall('PEXPIREAT', key, expiresAt)
return leaseUntil
