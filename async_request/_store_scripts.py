"""The Lua scripts of the operation store: each state change is one atomic Redis call.

Kept apart from `store.py` so the record's rules read in one place: who may move an operation
from which state to which.
"""

from __future__ import annotations

from async_request.events import APPEND_FUNCTION
from async_request.layers import TELL_FUNCTION

#: Record a new operation, unless its owner is at the in-flight cap. KEYS op, gone, owner
#: index, inflight, body, envelope, pending (the sweep's set, `sweep.py`); ARGV task id,
#: owner, now, expires sec, gone sec, cap (0: none), op key prefix, sealed body ('' when
#: inline), envelope JSON, then the op's field/value pairs. Returns 0 when recorded, else
#: how many the owner has in flight.
#: The count cannot leak: a member leaves at its operation's expiry deadline (its score) even
#: if no terminal write ever came (a message lost with its worker); and at the cap, members
#: whose record is gone or ended are dropped before counting again (a terminal write whose
#: ZREM was lost). That scan reads op keys by name, outside KEYS: a single Redis, not Cluster.
ACCEPT = """
local cap, now, expires = tonumber(ARGV[6]), tonumber(ARGV[3]), tonumber(ARGV[4])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  if redis.call('ZCARD', KEYS[4]) >= cap then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
      local state = redis.call('HGET', ARGV[7] .. id, 'state')
      if not state or state == 'completed' or state == 'failed' or state == 'cancelled' then
        redis.call('ZREM', KEYS[4], id)
      end
    end
    local held = redis.call('ZCARD', KEYS[4])
    if held >= cap then return held end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
redis.call('EXPIRE', KEYS[1], expires)
redis.call('SET', KEYS[2], ARGV[2], 'EX', expires + tonumber(ARGV[5]))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], expires + tonumber(ARGV[5]))
redis.call('ZADD', KEYS[4], string.format('%.3f', now + expires), ARGV[1])
redis.call('EXPIRE', KEYS[4], expires + 1)
if ARGV[8] ~= '' then redis.call('SET', KEYS[5], ARGV[8], 'EX', expires) end
if ARGV[9] ~= '' then redis.call('SET', KEYS[6], ARGV[9], 'EX', expires) end
redis.call('ZADD', KEYS[7], ARGV[3], ARGV[1])
return 0
"""

#: Claim for a run. KEYS op, lease, pending, then optionally seq and log of the owner the
#: message names; ARGV worker, lease ms, now, done channel (a waiting status read hears
#: `running` on it), task id, then with those keys: that owner and the `running` event
#: (`events.Append.args`). Any claim takes the operation out of the sweep's pending set: a
#: worker has its message, the broker did not lose it. The event is logged only when that
#: owner is the stored one (the message never decides who hears about an operation); else
#: the caller logs it for the stored owner. With a sixth key (the owner's channel-layer group)
#: and ARGV[12] (`layers.Tell.spec`), a logged event is also sent to the group (`tell_group`).
#: Returns {action, attempts, owner, result-or-error, seq (0: not logged), told (1: sent)};
#: action is unknown, done, failed, cancelled, busy (a live lease elsewhere) or run.
CLAIM = APPEND_FUNCTION + TELL_FUNCTION + """
local op = redis.call('HMGET', KEYS[1], 'state', 'owner', 'result', 'error', 'attempts')
local state, owner = op[1], op[2]
redis.call('ZREM', KEYS[3], ARGV[5])
if not state then return {'unknown', 0, '', '', 0, 0} end
local attempts = tonumber(op[5] or 0)
if state == 'completed' then return {'done', attempts, owner, op[3] or '', 0, 0} end
if state == 'failed' then return {'failed', attempts, owner, op[4] or '', 0, 0} end
if state == 'cancelled' then return {'cancelled', attempts, owner, op[4] or '', 0, 0} end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'busy', attempts, owner, '', 0, 0}
end
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[3], 'worker', ARGV[1])
if state ~= 'running' then redis.call('PUBLISH', ARGV[4], 'running') end
local seq, told = 0, 0
if #KEYS >= 5 and owner == ARGV[6] then
  seq = append_event(KEYS[4], KEYS[5], KEYS[1], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
  if #KEYS == 6 then told = tell_group(KEYS[6], ARGV[12], seq, ARGV[3]) end
end
return {'run', attempts, owner, '', seq, told}
"""

#: The outcome of a run, in one call. KEYS op, gone, lease, body, envelope, webhooks due,
#: pending (the sweep's set), then optionally inflight, seq and log of the owner the message
#: names, then optionally that owner's channel-layer group; ARGV state, now, expires sec,
#: gone sec, task id, done channel, then (with those keys) that owner and the terminal event
#: (`events.Append.args`), the group's `layers.Tell.spec` ('' without), then the op's
#: field/value pairs from ARGV[14]. A logged event is also sent to the group (`tell_group`).
#: The captured request (body, envelope) stays as long as the record of a failed or
#: cancelled run (its owner may re-run it); a completed one is never re-run. With a callback
#: its webhook is due now (webhooks.py). The in-flight slot and the event go to the stored
#: owner only when it is the one named; returns {seq (0: not logged), stored owner, told (1:
#: sent)}, so the caller does both itself otherwise.
TERMINAL = APPEND_FUNCTION + TELL_FUNCTION + """
local op = redis.call('HMGET', KEYS[1], 'owner', 'callback')
local owner, callback = op[1], op[2]
local expires = tonumber(ARGV[3])
if callback then redis.call('ZADD', KEYS[6], ARGV[2], ARGV[5]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 14))
redis.call('EXPIRE', KEYS[1], expires)
redis.call('EXPIRE', KEYS[2], expires + tonumber(ARGV[4]))
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[7], ARGV[5])
if ARGV[1] == 'completed' then
  redis.call('DEL', KEYS[4], KEYS[5])
else
  redis.call('EXPIRE', KEYS[4], expires)
  redis.call('EXPIRE', KEYS[5], expires)
end
local seq, told = 0, 0
if #KEYS >= 10 and owner and owner == ARGV[7] then
  redis.call('ZREM', KEYS[8], ARGV[5])
  seq = append_event(KEYS[9], KEYS[10], KEYS[1], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
  if #KEYS == 11 then told = tell_group(KEYS[11], ARGV[13], seq, ARGV[2]) end
end
redis.call('PUBLISH', ARGV[6], ARGV[1])
return {seq, owner or '', told}
"""

#: Cancel by the owner. KEYS op, lease, inflight, webhooks due, pending; ARGV owner, now,
#: reason, task id, cancels channel. Returns the state after the call (unknown when the op
#: is not the owner's): a pending operation is cancelled at once (a worker that claims it
#: later finds it cancelled), gives its in-flight slot back and, with a callback, is due for
#: its webhook; a running one is marked cancel_requested and announced on the cancels
#: channel (its worker hears it at once, see cancel_watch.py, or at its next lease renewal;
#: its terminal write frees the slot); a finished one is left as it is.
CANCEL = """
local op = redis.call('HMGET', KEYS[1], 'state', 'owner')
if not op[1] or op[2] ~= ARGV[1] then return 'unknown' end
if op[1] == 'pending' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[2], 'error', ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[4])
  redis.call('ZREM', KEYS[5], ARGV[4])
  if redis.call('HEXISTS', KEYS[1], 'callback') == 1 then
    redis.call('ZADD', KEYS[4], ARGV[2], ARGV[4])
  end
  return 'cancelled'
end
if op[1] == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', ARGV[2])
  redis.call('PUBLISH', ARGV[5], ARGV[4])
  return 'running'
end
return op[1]
"""

#: Renew a lease and read whether a cancel was asked for. KEYS op, lease; ARGV lease ms.
RENEW = """
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return redis.call('HGET', KEYS[1], 'cancel_requested') or ''
"""

#: Record progress. KEYS op; ARGV worker, progress JSON. Only the run that holds the operation
#: writes, and only while it runs: a late write never touches an ended operation. Returns 1
#: when written, else 0.
PROGRESS = """
local op = redis.call('HMGET', KEYS[1], 'state', 'worker')
if op[1] ~= 'running' or op[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
return 1
"""
