package directory

import (
	"context"
	"crypto/sha1"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// script is a Lua script run with EVALSHA, falling back to EVAL when the
// server does not know it yet (after a restart or on a new cluster node).
// Every script touches only the keys it is given, all in one hash slot.
type script struct {
	src string
	sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

func (s *script) evalsha(c rueidis.Client, keys, args []string) rueidis.Completed {
	return c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

func (s *script) eval(c rueidis.Client, keys, args []string) rueidis.Completed {
	return c.B().Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// run executes the script once.
func (s *script) run(ctx context.Context, c rueidis.Client, keys, args []string) rueidis.RedisResult {
	r := c.Do(ctx, s.evalsha(c, keys, args))
	if isNoScript(r.Error()) {
		r = c.Do(ctx, s.eval(c, keys, args))
	}
	return r
}

// scriptCall is one execution in runMulti.
type scriptCall struct {
	keys, args []string
}

// runMulti executes the script once per call in one pipelined batch; calls
// the server answered NOSCRIPT are sent again with EVAL.
func (s *script) runMulti(ctx context.Context, c rueidis.Client, calls []scriptCall) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(calls))
	for i, k := range calls {
		cmds[i] = s.evalsha(c, k.keys, k.args)
	}
	res := c.DoMulti(ctx, cmds...)
	var again []int
	for i, r := range res {
		if isNoScript(r.Error()) {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return res
	}
	cmds = cmds[:0]
	for _, i := range again {
		cmds = append(cmds, s.eval(c, calls[i].keys, calls[i].args))
	}
	for j, r := range c.DoMulti(ctx, cmds...) {
		res[again[j]] = r
	}
	return res
}

func isNoScript(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && re.IsNoScript()
}

// parseLua reads the deadline and the ident of a location value (value.go),
// or nothing when the value is not format 1 (left alone: a newer writer's).
const parseLua = `
local function parse(v)
  if string.sub(v, 1, 2) ~= '1:' then return nil, nil end
  local a = string.find(v, ':', 3, true)
  if not a then return nil, nil end
  local b = string.find(v, ':', a + 1, true)
  if not b then return nil, nil end
  return tonumber(string.sub(v, 3, a - 1)), string.sub(v, b + 1)
end
`

// attachScript stores a location.
//
//	KEYS[1] <prefix>loc:{user}
//	ARGV    device, value, ident, now ms, ttl ms, mode
//
// Mode "a" (Attach) always writes the field and deletes the user's fields
// whose deadline passed. Mode "r" (Refresh) writes it unless the field holds
// another session whose deadline has not passed (a newer session of the
// device won): then it returns 0. The key's TTL is raised to ttl, never
// lowered.
var attachScript = newScript(parseLua + `
local now = tonumber(ARGV[4])
if ARGV[6] == 'r' then
  local cur = redis.call('HGET', KEYS[1], ARGV[1])
  if cur then
    local dl, ident = parse(cur)
    if dl and ident ~= ARGV[3] and dl > now then return 0 end
  end
else
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local dl = parse(all[i + 1])
    if dl and dl <= now and all[i] ~= ARGV[1] then
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 1
`)

// detachScript deletes a location if it still names the session.
//
//	KEYS[1] <prefix>loc:{user}
//	ARGV    device, ident
var detachScript = newScript(parseLua + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local _, ident = parse(cur)
if ident ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
`)

// seenScript raises a user's last-seen time to ARGV[1], never lowers it.
//
//	KEYS[1] <prefix>seen:{user}
//	ARGV    at ms, ttl ms
var seenScript = newScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '')
if cur and cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// pruneNodesScript removes node ids whose registration key is gone from
// the kind's member set.
//
//	KEYS[1]  <prefix>nodes:{kind}; KEYS[2..] their <prefix>node:{kind}:<id>
//	ARGV     the ids, in the order of KEYS[2..]
var pruneNodesScript = newScript(`
local n = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    n = n + redis.call('SREM', KEYS[1], ARGV[i - 1])
  end
end
return n
`)
