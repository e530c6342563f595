--[[
  Claim a record in one step: take it when it is absent or expired, or when it is in
  progress with a lapsed lease and the same fingerprint (a takeover: attempt + 1).
  Otherwise answer the record that stands in the way, untouched. Time is Redis TIME.

  KEYS[1]  the record hash, <prefix>:{<id>}
  ARGV[1]  fingerprint
  ARGV[2]  fencing token of the new holder
  ARGV[3]  lease length, ms
  ARGV[4]  retention while in progress, ms: the record is kept until
           leaseUntil + max(lease, retention); a takeover keeps a later expiresAt

  Output
    acquired  {1, now, attempt, leaseUntil, takeover (0 | 1)}
    existing  {0, now, state, fingerprint, token, attempt, leaseUntil, expiresAt,
               outcome | nil, encoding | nil}
]]
if redis.replicate_commands then redis.replicate_commands() end
local rcall = redis.call
local key = KEYS[1]
local t = rcall('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local r = rcall('HMGET', key, 's', 'f', 't', 'a', 'l', 'e', 'o', 'x')
local attempt, floor, takeover = 1, 0, 0
if r[1] and tonumber(r[6]) > now then
  if r[1] ~= 'p' or r[2] ~= ARGV[1] or tonumber(r[5]) > now then
    return {0, now, r[1], r[2], r[3], tonumber(r[4]), tonumber(r[5]), tonumber(r[6]), r[7], r[8]}
  end
  attempt, floor, takeover = tonumber(r[4]) + 1, tonumber(r[6]), 1
end

local lease = tonumber(ARGV[3])
local leaseUntil = now + lease
local expiresAt = math.max(floor, leaseUntil + math.max(lease, tonumber(ARGV[4])))
if r[1] then rcall('DEL', key) end
rcall('HSET', key, 's', 'p', 'f', ARGV[1], 't', ARGV[2], 'a', string.format('%d', attempt),
  'l', string.format('%d', leaseUntil), 'e', string.format('%d', expiresAt))
rcall('PEXPIREAT', key, string.format('%d', expiresAt))
return {1, now, attempt, leaseUntil, takeover}
