package loadtest

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"time"
)

// The population model (mode population) is a pure, deterministic function
// of Config and its seed: who exists, which chats they share, and when each
// message is due. The run only plays it; tests check its distributions on a
// virtual clock.
//
// Users: U users; user u sends d_u messages per day, d_u drawn from a
// log-normal with mean DailyMean and shape DailySigma (heavy-tailed: most
// users send a few messages, a few send hundreds), capped at 50x the mean.
// A day is compressed: one second of the run plays Compression seconds of
// the day, so the aggregate rate is sum(d_u) * Compression / 86400. When
// Compression is zero it is derived from Rate.
//
// Chats: every user opens 1-on-1 chats with about Contacts others (random
// pairs), and the population shares Users*GroupsPerUser/GroupSizeMean
// groups whose sizes are log-normal around GroupSizeMean, 3..GroupSizeMax
// (at most 100), with uniformly random members.
//
// Conversations: a user starts a conversation at rate proportional to d_u
// and picks a group with probability GroupShare (when in one) or else a
// contact, favourite contacts first (weight 1/rank). A conversation is a
// burst: a geometric number of messages (mean BurstMean) BurstGap apart on
// average (exponential gaps); after a burst another member replies with
// probability ReplyProb after ReplyDelay on average (exponential), and that
// reply can be answered again (at most maxReplyDepth times). Bursts and
// reply delays are in run time, not compressed: they model how people type.
// The start rate is scaled by (1-ReplyProb)/BurstMean so that the expected
// message rate meets the target, and by 1/(1-OfflineShare) because a user
// who is offline when a message is due does not send it.
//
// By Poisson splitting the starts of each chat form a Poisson process of
// their own (the sum of its members' rates into it), so the model is
// generated per chat shard without any shared state.
//
// Day curve: with DayCurve, the start rate at run time t is the chat's rate
// times the curve's relative activity at the time of day DayStart +
// t*compression (mean 1 over the day). Starts are drawn at the peak rate
// and each kept with probability activity/peak (thinning), which gives
// exactly that time-varying Poisson process. Bursts and replies follow
// their start, as people do at any hour.

// maxReplyDepth bounds reply chains.
const maxReplyDepth = 20

// popChat is one chat of the model.
type popChat struct {
	members []int     // user indexes; a group's creator first
	group   bool      //
	rate    float64   // conversation starts per second of run time
	cum     []float64 // cumulative start weight per member, for the initiator
}

// model is the population: users, their daily counts, and chats.
type model struct {
	cfg         Config
	daily       []float64 // messages per day, per user
	chats       []popChat
	userChats   [][]int   // chat indexes per user (1-on-1 first, then groups)
	compression float64   // day seconds per run second
	rate        float64   // expected aggregate rate, messages per run second (the day's average)
	curve       []float64 // DayCurve scaled to mean 1; nil: flat
	curveMax    float64   // the largest of curve; 1 when flat
}

// dayTime returns the users' time of day at run time at (DayStart plus
// the compressed run time), in [0, 24h).
func (m *model) dayTime(at time.Duration) time.Duration {
	day := math.Mod(m.cfg.DayStart.Seconds()+at.Seconds()*m.compression, 86400)
	if day < 0 {
		day += 86400
	}
	return time.Duration(day * float64(time.Second))
}

// activity returns the relative start rate (mean 1 over the day) at run
// time at: the curve interpolated linearly between hour midpoints.
func (m *model) activity(at time.Duration) float64 {
	if m.curve == nil {
		return 1
	}
	x := m.dayTime(at).Hours() - 0.5 // hour h's value holds at h:30
	if x < 0 {
		x += 24
	}
	i := int(x) % 24
	f := x - math.Floor(x)
	return m.curve[i]*(1-f) + m.curve[(i+1)%24]*f
}

// newModel builds the population of cfg (mode population) from its seed.
func newModel(cfg Config) *model {
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x706f70))
	m := &model{cfg: cfg, daily: make([]float64, cfg.Users), userChats: make([][]int, cfg.Users)}
	mu := math.Log(cfg.DailyMean) - cfg.DailySigma*cfg.DailySigma/2
	var day float64
	for u := range m.daily {
		d := math.Min(math.Exp(mu+cfg.DailySigma*rng.NormFloat64()), 50*cfg.DailyMean)
		m.daily[u] = d
		day += d
	}
	// 1-on-1 chats: each user adds Contacts/2 random partners (rounded
	// up), so the average degree is about Contacts.
	type pair struct{ a, b int }
	seen := map[pair]bool{}
	contacts := make([][]int, cfg.Users)
	if cfg.Users >= 2 {
		for u := range cfg.Users {
			for range (cfg.Contacts + 1) / 2 {
				v := rng.IntN(cfg.Users - 1)
				if v >= u {
					v++
				}
				p := pair{min(u, v), max(u, v)}
				if seen[p] {
					continue
				}
				seen[p] = true
				c := len(m.chats)
				m.chats = append(m.chats, popChat{members: []int{u, v}})
				contacts[u] = append(contacts[u], c)
				contacts[v] = append(contacts[v], c)
			}
		}
	}
	// Groups.
	var groups [][]int
	if cfg.GroupsPerUser > 0 && cfg.Users >= 3 {
		n := int(math.Round(float64(cfg.Users) * cfg.GroupsPerUser / cfg.GroupSizeMean))
		gmu := math.Log(cfg.GroupSizeMean) - 0.5*0.5/2
		maxSize := min(cfg.GroupSizeMax, cfg.Users)
		groups = make([][]int, cfg.Users)
		for range n {
			size := int(math.Round(math.Exp(gmu + 0.5*rng.NormFloat64())))
			size = min(max(size, 3), maxSize)
			members := make([]int, 0, size)
			in := map[int]bool{}
			for len(members) < size {
				u := rng.IntN(cfg.Users)
				if !in[u] {
					in[u] = true
					members = append(members, u)
				}
			}
			c := len(m.chats)
			m.chats = append(m.chats, popChat{members: members, group: true})
			for _, u := range members {
				groups[u] = append(groups[u], c)
			}
		}
	}
	// Compression and start rates.
	m.compression = cfg.Compression
	if m.compression <= 0 {
		m.compression = cfg.Rate * 86400 / day
	}
	m.rate = day * m.compression / 86400
	m.curveMax = 1
	if len(cfg.DayCurve) == 24 {
		var sum float64
		for _, w := range cfg.DayCurve {
			sum += w
		}
		m.curve = make([]float64, 24)
		m.curveMax = 0
		for h, w := range cfg.DayCurve {
			m.curve[h] = w * 24 / sum
			m.curveMax = max(m.curveMax, m.curve[h])
		}
	}
	scale := m.compression / 86400 * (1 - cfg.ReplyProb) / cfg.BurstMean / (1 - cfg.OfflineShare)
	weights := make([][]float64, len(m.chats)) // per chat, per member
	for c := range m.chats {
		weights[c] = make([]float64, len(m.chats[c].members))
	}
	memberIdx := func(c, u int) int {
		for i, x := range m.chats[c].members {
			if x == u {
				return i
			}
		}
		return -1
	}
	for u := range cfg.Users {
		if groups != nil {
			m.userChats[u] = append(append(m.userChats[u], contacts[u]...), groups[u]...)
		} else {
			m.userChats[u] = contacts[u]
		}
		lam := m.daily[u] * scale
		gshare := cfg.GroupShare
		if groups == nil || len(groups[u]) == 0 {
			gshare = 0
		}
		if len(contacts[u]) == 0 {
			gshare = 1
		}
		if gshare > 0 && groups != nil {
			for _, c := range groups[u] {
				weights[c][memberIdx(c, u)] += lam * gshare / float64(len(groups[u]))
			}
		}
		var wsum float64
		for i := range contacts[u] {
			wsum += 1 / float64(i+1)
		}
		for i, c := range contacts[u] {
			weights[c][memberIdx(c, u)] += lam * (1 - gshare) / float64(i+1) / wsum
		}
	}
	for c := range m.chats {
		ch := &m.chats[c]
		ch.cum = make([]float64, len(ch.members))
		var s float64
		for i, w := range weights[c] {
			s += w
			ch.cum[i] = s
		}
		ch.rate = s
	}
	return m
}

// popEvent is one due message of the model.
type popEvent struct {
	at     time.Duration // due, from the start of sending
	chat   int32
	sender uint8 // member index in the chat
	left   uint16
	depth  uint8 // reply depth: 0 for a conversation start
	start  bool  // a conversation start marker, not a message
}

type eventHeap []popEvent

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h eventHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(popEvent)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// popGen generates the due messages of the chats c with c % shards ==
// shard, in due order. Not safe for concurrent use.
type popGen struct {
	m   *model
	rng *rand.Rand
	h   eventHeap
}

func (m *model) gen(shard, shards int) *popGen {
	g := &popGen{m: m, rng: rand.New(rand.NewPCG(uint64(m.cfg.Seed), uint64(shard+1)))}
	// Start in the past so that conversations (bursts, reply chains) are
	// in their steady state at time 0, not ramping up from none.
	pre := -m.preroll()
	for c := shard; c < len(m.chats); c += shards {
		if r := m.chats[c].rate * m.curveMax; r > 0 {
			g.h = append(g.h, popEvent{at: pre + g.exp(1/r), chat: int32(c), start: true})
		}
	}
	heap.Init(&g.h)
	for len(g.h) > 0 && g.h[0].at < 0 {
		g.next()
	}
	return g
}

// preroll is how long the model runs before time 0: about five times a
// reply chain's expected length, at most a minute.
func (m *model) preroll() time.Duration {
	c := &m.cfg
	burst := time.Duration((c.BurstMean - 1) * float64(c.BurstGap))
	chain := time.Duration(float64(burst+c.ReplyDelay) / (1 - c.ReplyProb))
	return min(5*chain, time.Minute)
}

// exp returns an exponential duration with the given mean in seconds.
func (g *popGen) exp(meanSec float64) time.Duration {
	return time.Duration(g.rng.ExpFloat64() * meanSec * float64(time.Second))
}

// burst returns a geometric burst length with mean BurstMean (>= 1).
func (g *popGen) burst() uint16 {
	p := 1 / g.m.cfg.BurstMean
	n := 1
	for n < 1000 && g.rng.Float64() >= p {
		n++
	}
	return uint16(n)
}

// next returns the next due message (at >= 0). ok is false when the
// shard has no chats with a positive rate.
func (g *popGen) next() (e popEvent, ok bool) {
	cfg := &g.m.cfg
	for len(g.h) > 0 {
		e = heap.Pop(&g.h).(popEvent)
		ch := &g.m.chats[e.chat]
		if e.start {
			heap.Push(&g.h, popEvent{at: e.at + g.exp(1/(ch.rate*g.m.curveMax)), chat: e.chat, start: true})
			if g.m.curve != nil && g.rng.Float64()*g.m.curveMax >= g.m.activity(e.at) {
				continue // thinned: a quieter hour
			}
			x := g.rng.Float64() * ch.rate
			i := 0
			for i < len(ch.cum)-1 && ch.cum[i] < x {
				i++
			}
			e = popEvent{at: e.at, chat: e.chat, sender: uint8(i), left: g.burst()}
		}
		if e.left > 1 {
			heap.Push(&g.h, popEvent{at: e.at + g.exp(cfg.BurstGap.Seconds()), chat: e.chat, sender: e.sender, left: e.left - 1, depth: e.depth})
		} else if e.depth < maxReplyDepth && g.rng.Float64() < cfg.ReplyProb {
			r := otherMember(g.rng, len(ch.members), int(e.sender))
			heap.Push(&g.h, popEvent{at: e.at + g.exp(cfg.ReplyDelay.Seconds()), chat: e.chat, sender: uint8(r), left: g.burst(), depth: e.depth + 1})
		}
		return e, true
	}
	return popEvent{}, false
}

// otherMember picks a member index in [0, n) other than not, uniformly.
func otherMember(rng *rand.Rand, n, not int) int {
	r := rng.IntN(n - 1)
	if r >= not {
		r++
	}
	return r
}

// churnEvent is one presence change of the model.
type churnEvent struct {
	at      time.Duration // from the start of sending
	user    int32
	offline bool // goes offline (else comes back)
}

type churnHeap []churnEvent

func (h churnHeap) Len() int           { return len(h) }
func (h churnHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h churnHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *churnHeap) Push(x any)        { *h = append(*h, x.(churnEvent)) }
func (h *churnHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// churnGen generates presence changes: every user alternates online and
// offline periods, exponential with means OnlineMean and OfflineMean where
// OnlineMean = OfflineMean*(1-OfflineShare)/OfflineShare, so OfflineShare
// of the users are offline at any time. It starts in the stationary state
// (memoryless periods): each user is offline at time 0 with probability
// OfflineShare. Not safe for concurrent use.
type churnGen struct {
	rng             *rand.Rand
	offMean, onMean float64 // seconds
	h               churnHeap
}

func (m *model) churn() *churnGen {
	cfg := &m.cfg
	g := &churnGen{rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x636875726e))}
	if cfg.OfflineShare <= 0 || cfg.OfflineMean <= 0 {
		return g
	}
	g.offMean = cfg.OfflineMean.Seconds()
	g.onMean = g.offMean * (1 - cfg.OfflineShare) / cfg.OfflineShare
	for u := range cfg.Users {
		if g.rng.Float64() < cfg.OfflineShare {
			g.h = append(g.h, churnEvent{at: 0, user: int32(u), offline: true})
		} else {
			g.h = append(g.h, churnEvent{at: g.exp(g.onMean), user: int32(u), offline: true})
		}
	}
	heap.Init(&g.h)
	return g
}

func (g *churnGen) exp(meanSec float64) time.Duration {
	return time.Duration(g.rng.ExpFloat64() * meanSec * float64(time.Second))
}

// next returns the next presence change; ok is false without churn.
func (g *churnGen) next() (e churnEvent, ok bool) {
	if len(g.h) == 0 {
		return churnEvent{}, false
	}
	e = heap.Pop(&g.h).(churnEvent)
	if e.offline {
		heap.Push(&g.h, churnEvent{at: e.at + g.exp(g.offMean), user: e.user})
	} else {
		heap.Push(&g.h, churnEvent{at: e.at + g.exp(g.onMean), user: e.user, offline: true})
	}
	return e, true
}

// stormPlan returns, for a reconnect storm, the users whose connections
// drop (each with probability frac) and each one's reconnect delay
// (uniform in [0, jitter)).
func stormPlan(seed int64, users int, frac float64, jitter time.Duration) (who []int, delay []time.Duration) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x73746f726d))
	for u := range users {
		if rng.Float64() < frac {
			who = append(who, u)
			var d time.Duration
			if jitter > 0 {
				d = time.Duration(rng.Int64N(int64(jitter)))
			}
			delay = append(delay, d)
		}
	}
	return who, delay
}
