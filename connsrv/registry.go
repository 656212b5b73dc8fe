package connsrv

import "sync"

const registryShards = 64

// registry maps session ids to sessions, sharded to keep lock hold times
// short. Safe for concurrent use. Lock order: a shard's mu before a
// session's mu.
type registry struct {
	shards [registryShards]registryShard
}

type registryShard struct {
	mu sync.Mutex // guards m
	m  map[uint64]*session
}

func newRegistry() *registry {
	r := &registry{}
	for i := range r.shards {
		r.shards[i].m = make(map[uint64]*session)
	}
	return r
}

func (r *registry) shard(id uint64) *registryShard { return &r.shards[id%registryShards] }

func (r *registry) add(s *session) {
	sh := r.shard(s.id)
	sh.mu.Lock()
	sh.m[s.id] = s
	sh.mu.Unlock()
}

func (r *registry) remove(id uint64) {
	sh := r.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}

func (r *registry) get(id uint64) *session {
	sh := r.shard(id)
	sh.mu.Lock()
	s := sh.m[id]
	sh.mu.Unlock()
	return s
}

// each calls fn for every session, one shard lock at a time. fn must not
// block nor touch the registry.
func (r *registry) each(fn func(*session)) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for _, s := range sh.m {
			fn(s)
		}
		sh.mu.Unlock()
	}
}

// count returns the number of sessions.
func (r *registry) count() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
