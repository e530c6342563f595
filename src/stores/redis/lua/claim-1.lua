--[[
  Claim a record in one step: take it when it is absent or expired, or when it is in
  progress with a lapsed lease and the same fingerprint (a takeover: attempt + 1).
  Otherwise answer the record that stands in the way, untouched, except that a live lease
  found by a claim with the same fingerprint (a waiter) marks the record awaited (w = 1), so
  its complete/release publish a wake-up. Replays of completed records only read.
  Time is Redis TIME.

  The record hash: s state (p | c), f fingerprint, t token, a attempt, l leaseUntil,
  e expiresAt, o outcome, x outcome encoding, w awaited, and for inspect only (never read by a
  transition): b createdAt, d completedAt (complete-1.lua), h scope hash. A record written
  before b, d and h existed has none of them (inspect answers 0, 0, '').

  KEYS[1]  the record hash, <prefix>:{<id>}
  ARGV[1]  fingerprint
  ARGV[2]  fencing token of the new holder
  ARGV[3]  lease length, ms
  ARGV[4]  retention while in progress, ms: the record is kept until
           leaseUntil + max(lease, retention); a takeover keeps a later expiresAt
  ARGV[5]  scope hash ('' when unscoped), kept for inspect only

  A new record also gets b = now (created at) and, when ARGV[5] is not '', h = ARGV[5]
  (scope hash); a takeover (or a released marker taken again) keeps both, as it keeps s and f.

  Output, one string either way (a client decodes every reply element it receives)
    acquired  <attempt>,<leaseUntil>; attempt > 1 is a takeover
    existing  <state><attempt>,<leaseUntil>,<expiresAt>,<encoding>,<#fingerprint>,<#token>,<now>,
              <fingerprint><token><outcome>   (# in bytes; encoding '' or 'j'; no outcome in progress)
]]
if redis.replicate_commands then redis.replicate_commands() end
local rcall = redis.call
local key = KEYS[1]
local t = rcall('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local r = rcall('HMGET', key, 's', 'f', 't', 'a', 'l', 'e', 'o', 'x', 'w')
local live = r[1] and tonumber(r[6]) > now
local takeover = live and r[1] == 'p' and r[2] == ARGV[1] and tonumber(r[5]) <= now
if live and not takeover then
  -- a waiter (same fingerprint, live lease) marks the record: its complete/release publish
  if r[1] == 'p' and r[2] == ARGV[1] and not r[9] then rcall('HSET', key, 'w', '1') end
  return string.format('%s%s,%s,%s,%s,%d,%d,%d,', r[1], r[4], r[5], r[6], r[8] or '', #r[2], #r[3], now)
    .. r[2] .. r[3] .. (r[7] or '')
end

local lease = tonumber(ARGV[3])
local leaseUntil = now + lease
local keep = leaseUntil + math.max(lease, tonumber(ARGV[4]))
local attempt = 1
if takeover then
  -- the same fingerprint, still in progress: s and f stay, and so does the awaited mark
  attempt = tonumber(r[4]) + 1
  keep = math.max(tonumber(r[6]), keep)
  rcall('HSET', key, 't', ARGV[2], 'a', string.format('%d', attempt),
    'l', string.format('%d', leaseUntil), 'e', string.format('%d', keep))
else
  if r[1] then rcall('DEL', key) end
  local scope = ARGV[5]
  if scope and scope ~= '' then
    rcall('HSET', key, 's', 'p', 'f', ARGV[1], 't', ARGV[2], 'a', '1',
      'l', string.format('%d', leaseUntil), 'e', string.format('%d', keep),
      'b', string.format('%d', now), 'h', scope)
  else
    rcall('HSET', key, 's', 'p', 'f', ARGV[1], 't', ARGV[2], 'a', '1',
      'l', string.format('%d', leaseUntil), 'e', string.format('%d', keep),
      'b', string.format('%d', now))
  end
end
rcall('PEXPIREAT', key, string.format('%d', keep))
return string.format('%d,%d', attempt, leaseUntil)
