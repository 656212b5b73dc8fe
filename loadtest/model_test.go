package loadtest

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func popConfig() Config {
	c := Default()
	c.URL = "ws://x"
	c.Mode = ModePopulation
	c.Users = 2000
	c.Rate = 500
	return c
}

// playModel runs every shard of m's generator over a virtual span and
// returns the messages in due order (no clock involved).
func playModel(m *model, shards int, span time.Duration) []popEvent {
	var out []popEvent
	for i := range shards {
		g := m.gen(i, shards)
		for {
			e, ok := g.next()
			if !ok || e.at >= span {
				break
			}
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b popEvent) int { return int(a.at - b.at) })
	return out
}

func within(got, want, tol float64) bool { return math.Abs(got-want) <= tol*want }

func TestModelRate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"defaults", func(*Config) {}},
		{"no replies, no churn", func(c *Config) { c.ReplyProb, c.OfflineShare = 0, 0 }},
		{"long bursts, many groups", func(c *Config) { c.BurstMean, c.GroupsPerUser, c.GroupShare = 6, 3, 0.6 }},
		{"compression given", func(c *Config) { c.Compression = 2000; c.Rate = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := popConfig()
			tt.edit(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			m := newModel(cfg)
			if cfg.Compression > 0 && m.compression != cfg.Compression {
				t.Errorf("got compression %v, want %v", m.compression, cfg.Compression)
			}
			if cfg.Rate > 0 && !within(m.rate, cfg.Rate, 1e-9) {
				t.Errorf("got model rate %v, want %v", m.rate, cfg.Rate)
			}
			span := 200 * time.Second
			ev := playModel(m, 4, span)
			// The generator sends everything; the run skips messages of
			// offline senders, which the start rate is scaled up for.
			got := float64(len(ev)) / span.Seconds() * (1 - cfg.OfflineShare)
			if !within(got, m.rate, 0.08) {
				t.Errorf("got %.0f msg/s (after offline skips), want %.0f ±8%%", got, m.rate)
			}
			for i := 1; i < len(ev); i++ {
				if ev[i].at < 0 {
					t.Fatalf("event %d due at %s, before the start", i, ev[i].at)
				}
			}
		})
	}
}

func TestModelShape(t *testing.T) {
	cfg := popConfig()
	cfg.Users = 5000
	m := newModel(cfg)
	pop := m.describe(cfg)
	// Log-normal with sigma 1: the top 10% send about 40% of the messages.
	if pop.Top10Share < 0.3 || pop.Top10Share > 0.5 {
		t.Errorf("got top 10%% share %.2f, want 0.3..0.5 (heavy-tailed)", pop.Top10Share)
	}
	if !within(pop.DailyTotal/float64(cfg.Users), cfg.DailyMean, 0.1) {
		t.Errorf("got %.1f messages per user per day, want %v ±10%%", pop.DailyTotal/float64(cfg.Users), cfg.DailyMean)
	}
	if want := float64(cfg.Users) * cfg.GroupsPerUser / cfg.GroupSizeMean; !within(float64(pop.Groups), want, 0.02) {
		t.Errorf("got %d groups, want %.0f", pop.Groups, want)
	}
	if pop.MeanGroup < 5 || pop.MeanGroup > 7 {
		t.Errorf("got mean group size %.1f, want about %v", pop.MeanGroup, cfg.GroupSizeMean)
	}
	var direct int
	for _, c := range m.chats {
		if c.group {
			if len(c.members) < 3 || len(c.members) > cfg.GroupSizeMax {
				t.Errorf("got a group of %d, want 3..%d", len(c.members), cfg.GroupSizeMax)
			}
			continue
		}
		direct++
		if len(c.members) != 2 || c.members[0] == c.members[1] {
			t.Errorf("got 1-on-1 members %v", c.members)
		}
	}
	if avg := 2 * float64(direct) / float64(cfg.Users); avg < float64(cfg.Contacts)*0.9 || avg > float64(cfg.Contacts)*1.1 {
		t.Errorf("got %.1f contacts per user, want about %d", avg, cfg.Contacts)
	}

	// Messages: share in groups, burst sizes, reply latency.
	ev := playModel(m, 2, 300*time.Second)
	var inGroups int
	for _, e := range ev {
		if m.chats[e.chat].group {
			inGroups++
		}
	}
	// About GroupShare of a group member's conversations; users in no
	// group (about a third with one group each on average) send none.
	if share := float64(inGroups) / float64(len(ev)); share < 0.12 || share > 0.3 {
		t.Errorf("got %.2f of messages in groups, want 0.12..0.3", share)
	}
	var bursts, msgs, replies int
	var gaps time.Duration
	var ngaps int
	last := map[int32]popEvent{}
	for _, e := range ev {
		msgs++
		if p, ok := last[e.chat]; ok && p.sender == e.sender && p.depth == e.depth && p.left == e.left+1 {
			gaps += e.at - p.at
			ngaps++
		}
		if e.left == 1 {
			bursts++
		}
		if e.depth > 0 && e.left > 0 {
			replies++
		}
		last[e.chat] = e
	}
	if mean := float64(msgs) / float64(bursts); !within(mean, cfg.BurstMean, 0.1) {
		t.Errorf("got %.2f messages per burst, want %v ±10%%", mean, cfg.BurstMean)
	}
	if ngaps > 0 && !within(float64(gaps/time.Duration(ngaps)), float64(cfg.BurstGap), 0.2) {
		t.Errorf("got mean burst gap %s, want about %s", gaps/time.Duration(ngaps), cfg.BurstGap)
	}
	// A chain of replies with probability p has 1/(1-p) bursts, p/(1-p)
	// of them replies: the share of reply messages is p.
	if share := float64(replies) / float64(msgs); !within(share, cfg.ReplyProb, 0.1) {
		t.Errorf("got %.2f of messages in replies, want about %v", share, cfg.ReplyProb)
	}
}

func TestModelDeterministic(t *testing.T) {
	cfg := popConfig()
	a := playModel(newModel(cfg), 3, 20*time.Second)
	b := playModel(newModel(cfg), 3, 20*time.Second)
	if !slices.Equal(a, b) {
		t.Error("two models of one seed differ")
	}
	cfg.Seed = 2
	if c := playModel(newModel(cfg), 3, 20*time.Second); slices.Equal(a, c) {
		t.Error("models of two seeds are equal")
	}
}

func TestOtherMember(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{2, 3, 10, 100} {
		for not := range n {
			seen := map[int]int{}
			for range 50 * n {
				r := otherMember(rng, n, not)
				if r == not || r < 0 || r >= n {
					t.Fatalf("n %d not %d: got %d", n, not, r)
				}
				seen[r]++
			}
			if len(seen) != n-1 {
				t.Errorf("n %d not %d: got %d distinct members, want %d", n, not, len(seen), n-1)
			}
		}
	}
}

func TestChurn(t *testing.T) {
	tests := []struct {
		share float64
		mean  time.Duration
	}{{0.1, 20 * time.Second}, {0.3, 5 * time.Second}, {0.05, time.Minute}}
	for _, tt := range tests {
		cfg := popConfig()
		cfg.Users = 3000
		cfg.OfflineShare, cfg.OfflineMean = tt.share, tt.mean
		g := newModel(cfg).churn()
		span := 20 * tt.mean
		off := make([]time.Duration, cfg.Users) // when it went offline, -1 online
		for i := range off {
			off[i] = -1
		}
		var offTime, periods time.Duration
		var initial int
		for {
			e, ok := g.next()
			if !ok || e.at > span {
				break
			}
			if e.offline {
				if off[e.user] >= 0 {
					t.Fatalf("user %d: offline twice without coming back", e.user)
				}
				if e.at == 0 {
					initial++
				}
				off[e.user] = e.at
				continue
			}
			if off[e.user] < 0 {
				t.Fatalf("user %d: back online without going offline", e.user)
			}
			offTime += e.at - off[e.user]
			periods++
			off[e.user] = -1
		}
		for _, at := range off {
			if at >= 0 {
				offTime += span - at
			}
		}
		if got := float64(offTime) / float64(span) / float64(cfg.Users); !within(got, tt.share, 0.1) {
			t.Errorf("share %v: got %.3f of user time offline, want ±10%%", tt.share, got)
		}
		if got := float64(initial) / float64(cfg.Users); !within(got, tt.share, 0.25) {
			t.Errorf("share %v: got %.3f offline at the start, want about the share", tt.share, got)
		}
		if periods == 0 {
			t.Errorf("share %v: no offline period ended", tt.share)
		}
	}
}

func TestChurnOff(t *testing.T) {
	cfg := popConfig()
	cfg.OfflineShare = 0
	if _, ok := newModel(cfg).churn().next(); ok {
		t.Error("got a churn event with offline_share 0")
	}
}

func TestStormPlan(t *testing.T) {
	who, delay := stormPlan(1, 10000, 0.3, 2*time.Second)
	if len(who) != len(delay) || !within(float64(len(who)), 3000, 0.05) {
		t.Fatalf("got %d users (%d delays), want about 3000", len(who), len(delay))
	}
	var sum time.Duration
	for _, d := range delay {
		if d < 0 || d >= 2*time.Second {
			t.Fatalf("got delay %s, want in [0, 2s)", d)
		}
		sum += d
	}
	if mean := sum / time.Duration(len(delay)); mean < 900*time.Millisecond || mean > 1100*time.Millisecond {
		t.Errorf("got mean delay %s, want about 1s (uniform)", mean)
	}
	if who, _ := stormPlan(1, 100, 0, time.Second); len(who) != 0 {
		t.Errorf("fraction 0: got %d users", len(who))
	}
}

func TestPopulationConfigValidate(t *testing.T) {
	c := popConfig()
	c.Users, c.DailyMean, c.GroupSizeMax, c.GroupShare, c.BurstMean, c.ReplyProb, c.OfflineShare, c.StormFraction = 1, 0, 101, 2, 0.5, 1, 0.95, 2
	err := c.Validate()
	if err == nil {
		t.Fatal("got nil, want errors")
	}
	for _, want := range []string{"users", "daily_mean", "group_size_max", "group_share", "burst_mean", "reply_prob", "offline_share", "storm_fraction"} {
		if !strings.Contains(err.Error(), "loadtest."+want) {
			t.Errorf("got %q, want it to mention loadtest.%s", err, want)
		}
	}
	if err := popConfig().Validate(); err != nil {
		t.Errorf("defaults: got %v", err)
	}
	curves := []struct {
		name  string
		curve []float64
		start time.Duration
		want  string // "" = valid
	}{
		{"typical", TypicalDayCurve, 18 * time.Hour, ""},
		{"too few hours", []float64{1, 2, 3}, 0, "loadtest.day_curve"},
		{"all zero", make([]float64, 24), 0, "loadtest.day_curve"},
		{"negative", append([]float64{-1}, make([]float64, 23)...), 0, "loadtest.day_curve"},
		{"start past the day", TypicalDayCurve, 24 * time.Hour, "loadtest.day_start"},
	}
	for _, tt := range curves {
		c := popConfig()
		c.DayCurve, c.DayStart = tt.curve, tt.start
		err := c.Validate()
		if tt.want == "" && err != nil {
			t.Errorf("%s: got %v, want valid", tt.name, err)
		}
		if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: got %v, want an error about %s", tt.name, err, tt.want)
		}
	}
}

func TestModelDayCurve(t *testing.T) {
	// Busy mornings: hours 0-11 three times as active as 12-23.
	curve := make([]float64, 24)
	for h := range curve {
		curve[h] = 1
		if h < 12 {
			curve[h] = 3
		}
	}
	tests := []struct {
		name      string
		start     time.Duration
		wantRatio float64 // messages in the run's first half over its second
	}{
		{"from midnight", 0, 3},
		{"from noon", 12 * time.Hour, 1.0 / 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := popConfig()
			cfg.ReplyProb, cfg.BurstMean, cfg.OfflineShare = 0, 1, 0 // one message per start
			cfg.Rate = 0
			cfg.Compression = 86400.0 / 200 // the whole day in 200 s
			cfg.DayCurve, cfg.DayStart = curve, tt.start
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			m := newModel(cfg)
			span := 200 * time.Second
			ev := playModel(m, 4, span)
			// The day's average rate is kept.
			if got := float64(len(ev)) / span.Seconds(); !within(got, m.rate, 0.05) {
				t.Errorf("got %.0f msg/s over the day, want the average %.0f ±5%%", got, m.rate)
			}
			var first, second float64
			for _, e := range ev {
				if e.at < span/2 {
					first++
				} else {
					second++
				}
			}
			// Interpolation smooths the two hour-long edges a little.
			if got := first / second; !within(got, tt.wantRatio, 0.15) {
				t.Errorf("first half %v, second half %v: ratio %.2f, want %.2f ±15%%", first, second, got, tt.wantRatio)
			}
		})
	}
}

func TestModelActivity(t *testing.T) {
	curve := make([]float64, 24)
	curve[6] = 24 // all activity at 6:30, none elsewhere: mean 1, peak 24
	cfg := popConfig()
	cfg.Compression = 3600 // an hour per run second
	cfg.Rate = 0
	cfg.DayCurve = curve
	m := newModel(cfg)
	tests := []struct {
		at   time.Duration
		want float64
	}{
		{6500 * time.Millisecond, 24},   // 6:30
		{6 * time.Second, 12},           // 6:00, half way from 5:30
		{7 * time.Second, 12},           // 7:00
		{3 * time.Second, 0},            // 3:00
		{30500 * time.Millisecond, 24},  // 6:30 the next day
		{-17500 * time.Millisecond, 24}, // 6:30 the day before
	}
	for _, tt := range tests {
		if got := m.activity(tt.at); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("activity at %s: got %v, want %v", tt.at, got, tt.want)
		}
	}
	if m.curveMax != 24 {
		t.Errorf("curveMax %v, want 24", m.curveMax)
	}
}
