package logic

import (
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// session is one client connection held by a connection node.
type session struct {
	link   *link
	id     uint64
	user   string
	device string
	remote string
	opened time.Time

	dmu    sync.Mutex // guards dstate; taken before link.mu, never under registry.mu
	dstate deliveryState
}

// deliver queues a server frame for the session's client.
func (s *session) deliver(payload []byte) bool { return s.link.deliver(s.id, payload) }

type sessionKey struct {
	link *link
	id   uint64
}

// registry maps sessions to users. Safe for concurrent use.
type registry struct {
	mu       sync.RWMutex // guards the following
	sessions map[sessionKey]*session
	byUser   map[string][]*session
}

func newRegistry() *registry {
	return &registry{sessions: map[sessionKey]*session{}, byUser: map[string][]*session{}}
}

// Gauges summed over every logic node of the process.
var (
	sessionsGauge    = metrics.NewGauge(`parley_logic_sessions`, nil)
	onlineUsersGauge = metrics.NewGauge(`parley_logic_online_users`, nil)
)

// add registers s and reports whether it is the user's first session.
func (r *registry) add(s *session) (first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := sessionKey{s.link, s.id}
	if old, ok := r.sessions[k]; ok {
		r.removeLocked(old)
		go old.closeDelivery() // dmu is never taken under registry.mu
	}
	r.sessions[k] = s
	sessionsGauge.Inc()
	first = len(r.byUser[s.user]) == 0
	if first {
		onlineUsersGauge.Inc()
	}
	r.byUser[s.user] = append(r.byUser[s.user], s)
	return first
}

// get returns the session or nil.
func (r *registry) get(l *link, id uint64) *session {
	r.mu.RLock()
	s := r.sessions[sessionKey{l, id}]
	r.mu.RUnlock()
	return s
}

// remove unregisters a session; it returns the session (nil if unknown)
// and whether it was the user's last one.
func (r *registry) remove(l *link, id uint64) (s *session, last bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s = r.sessions[sessionKey{l, id}]
	if s == nil {
		return nil, false
	}
	return s, r.removeLocked(s)
}

func (r *registry) removeLocked(s *session) (last bool) {
	delete(r.sessions, sessionKey{s.link, s.id})
	sessionsGauge.Dec()
	list := r.byUser[s.user]
	for i, x := range list {
		if x == s {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(r.byUser, s.user)
		onlineUsersGauge.Dec()
		return true
	}
	r.byUser[s.user] = list
	return false
}

// removeLink unregisters every session of a link and returns the users
// that have no session left.
func (r *registry) removeLink(l *link) (offline []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, s := range r.sessions {
		if k.link != l {
			continue
		}
		go s.closeDelivery() // dmu is never taken under registry.mu
		if r.removeLocked(s) {
			offline = append(offline, s.user)
		}
	}
	return offline
}

// appendSessions appends the user's sessions to dst.
func (r *registry) appendSessions(dst []*session, user string) []*session {
	r.mu.RLock()
	dst = append(dst, r.byUser[user]...)
	r.mu.RUnlock()
	return dst
}

// appendAll appends every session to dst.
func (r *registry) appendAll(dst []*session) []*session {
	r.mu.RLock()
	for _, s := range r.sessions {
		dst = append(dst, s)
	}
	r.mu.RUnlock()
	return dst
}

// online reports whether the user has a session on this node.
func (r *registry) online(user string) bool {
	r.mu.RLock()
	n := len(r.byUser[user])
	r.mu.RUnlock()
	return n > 0
}

// linkSessions returns the sessions of a link.
func (r *registry) linkSessions(l *link) []*session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*session
	for k, s := range r.sessions {
		if k.link == l {
			out = append(out, s)
		}
	}
	return out
}

// oldestOver returns the user's oldest session when the user has more than
// max sessions, else nil.
func (r *registry) oldestOver(user string, max int) *session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	list := r.byUser[user]
	if len(list) <= max {
		return nil
	}
	oldest := list[0]
	for _, s := range list[1:] {
		if s.opened.Before(oldest.opened) || (s.opened.Equal(oldest.opened) && s.id < oldest.id) {
			oldest = s
		}
	}
	return oldest
}
