--[[
  Release a record, only if the token still holds it in progress. Attempt 1 deletes it, or
  with a guard (ARGV[3] > 0) keeps a released marker (t = '', a = 0, l = now) until now + guard,
  so another fingerprint is refused meanwhile and the same one claims attempt 1 again. A
  later attempt keeps it in progress with the lease ended (l = now) and no token, so the next
  claim is a takeover: an earlier attempt's lease ran out mid-action, its effect may exist.
  Either way wakes waiters by publishing 'r' on the channel named like the key, when a claim
  marked the record awaited. A record kept (marker or ended lease) keeps b (created at) and h
  (scope hash).

  KEYS[1]  the record hash, <prefix>:{<id>}
  ARGV[1]  fencing token
  ARGV[2]  notification command: 'PUBLISH', 'SPUBLISH' or '' (none)
  ARGV[3]  guard window after a release on attempt 1, ms ('0' or absent: delete)

  Output
    1  released
    0  fenced off: completed, taken over, or gone
]]
-- '' marks a released record: nobody holds it, so an empty token never acts
if ARGV[1] == '' then return 0 end
if redis.replicate_commands then redis.replicate_commands() end
local rcall = redis.call
local key = KEYS[1]
local t = rcall('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local r = rcall('HMGET', key, 's', 't', 'e', 'a', 'w')
if r[1] ~= 'p' or r[2] ~= ARGV[1] or tonumber(r[3]) <= now then return 0 end

local guard = tonumber(ARGV[3] or '0') or 0
if tonumber(r[4]) == 1 and guard > 0 then
  local expiresAt = string.format('%d', now + guard)
  rcall('HSET', key, 't', '', 'a', '0', 'l', string.format('%d', now), 'e', expiresAt)
  rcall('PEXPIREAT', key, expiresAt)
elseif tonumber(r[4]) == 1 then
  rcall('DEL', key)
else
  rcall('HSET', key, 't', '', 'l', string.format('%d', now))
end
if r[5] and (ARGV[2] == 'PUBLISH' or ARGV[2] == 'SPUBLISH') then rcall(ARGV[2], key, 'r') end
return 1
