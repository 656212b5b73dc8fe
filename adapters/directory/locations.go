package directory

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/redis/rueidis"
)

// Attach records that loc's device is online at loc's logic and connection
// node, replacing any earlier location of the device. It also deletes the
// user's locations whose deadline passed. The logic node must be registered
// (Register) before it attaches: readers ignore locations of nodes they do
// not see in the registry. Safe for concurrent use.
func (d *Directory) Attach(ctx context.Context, loc record.DeviceLocation) error {
	err := d.call(ctx, opAttach, func(ctx context.Context, c rueidis.Client) error {
		return attachScript.run(ctx, c, []string{d.locKey(loc.User)}, d.attachArgs(loc, time.Now(), "a")).Error()
	})
	if err != nil {
		return fmt.Errorf("cannot attach device %s/%s: %w", loc.User, loc.Device, err)
	}
	return nil
}

// attachArgs builds the ARGV of attachScript.
func (d *Directory) attachArgs(loc record.DeviceLocation, now time.Time, mode string) []string {
	n := now.UnixMilli()
	ttl := ms(d.cfg.LocationTTL)
	val := appendLocValue(nil, locEntry{Deadline: n + ttl, Written: n, Session: loc.Session, Logic: loc.Logic, Conn: loc.Conn})
	ident := string(appendIdent(nil, loc.Logic, loc.Conn, loc.Session))
	return []string{loc.Device, string(val), ident, strconv.FormatInt(n, 10), strconv.FormatInt(ttl, 10), mode}
}

// Detach removes loc's device location if it still names loc's session
// (logic node, connection node and session id): a newer session of the same
// device, attached meanwhile, is left in place. Safe for concurrent use.
func (d *Directory) Detach(ctx context.Context, loc record.DeviceLocation) error {
	err := d.call(ctx, opDetach, func(ctx context.Context, c rueidis.Client) error {
		ident := string(appendIdent(nil, loc.Logic, loc.Conn, loc.Session))
		return detachScript.run(ctx, c, []string{d.locKey(loc.User)}, []string{loc.Device, ident}).Error()
	})
	if err != nil {
		return fmt.Errorf("cannot detach device %s/%s: %w", loc.User, loc.Device, err)
	}
	return nil
}

// Refresh is the heartbeat of a logic node's sessions: it re-attaches every
// location in one pipelined batch, moving their deadlines LocationTTL ahead,
// and re-creates them if Redis lost them. A location whose device has since
// been attached by another live session is left to that session. Call it
// every LocationTTL/3 with all of the node's sessions. Safe for concurrent
// use.
func (d *Directory) Refresh(ctx context.Context, locs []record.DeviceLocation) error {
	if len(locs) == 0 {
		return nil
	}
	err := d.call(ctx, opRefresh, func(ctx context.Context, c rueidis.Client) error {
		now := time.Now()
		calls := make([]scriptCall, len(locs))
		for i, loc := range locs {
			calls[i] = scriptCall{keys: []string{d.locKey(loc.User)}, args: d.attachArgs(loc, now, "r")}
		}
		var first error
		failed := 0
		for _, r := range attachScript.runMulti(ctx, c, calls) {
			n, err := r.AsInt64()
			if err != nil {
				failed++
				if first == nil {
					first = err
				}
				continue
			}
			if n == 0 {
				refreshSuperseded.Inc()
			}
		}
		if first != nil {
			return fmt.Errorf("%d of %d failed: %w", failed, len(locs), first)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot refresh %d locations: %w", len(locs), err)
	}
	return nil
}

// Locate returns the live locations of users' devices, sorted by device.
// Users without any are absent from the map. A location is live while its
// deadline has not passed, its logic node is registered, and it was
// written after that node started (not left over from an earlier process
// with the same node id). Reads are served from the client-side cache
// while Redis has not invalidated them. Safe for concurrent use.
func (d *Directory) Locate(ctx context.Context, users []string) (map[string][]record.DeviceLocation, error) {
	var out map[string][]record.DeviceLocation
	err := d.call(ctx, opLocate, func(ctx context.Context, c rueidis.Client) error {
		var err error
		out, _, err = d.locate(ctx, c, users, false, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot locate %d users: %w", len(users), err)
	}
	return out, nil
}

// locate reads the live locations of users and, with seen, their last-seen
// times (0 when unknown), in the order of users. cached selects the
// client-side cache for the reads of locations and the logic member set;
// the node records are always read through it (they change only when
// nodes heartbeat, which invalidates them).
func (d *Directory) locate(ctx context.Context, c rueidis.Client, users []string, seen, cached bool) (map[string][]record.DeviceLocation, []int64, error) {
	per := 1
	if seen {
		per = 2
	}
	var res []rueidis.RedisResult
	if cached {
		cmds := make([]rueidis.CacheableTTL, 0, 1+per*len(users))
		cmds = append(cmds, rueidis.CT(c.B().Smembers().Key(d.nodesKey(record.NodeLogic)).Cache(), d.cfg.CacheTTL))
		for _, u := range users {
			cmds = append(cmds, rueidis.CT(c.B().Hgetall().Key(d.locKey(u)).Cache(), d.cfg.CacheTTL))
			if seen {
				cmds = append(cmds, rueidis.CT(c.B().Get().Key(d.seenKey(u)).Cache(), d.cfg.CacheTTL))
			}
		}
		res = c.DoMultiCache(ctx, cmds...)
	} else {
		cmds := make(rueidis.Commands, 0, 1+per*len(users))
		cmds = append(cmds, c.B().Smembers().Key(d.nodesKey(record.NodeLogic)).Build())
		for _, u := range users {
			cmds = append(cmds, c.B().Hgetall().Key(d.locKey(u)).Build())
			if seen {
				cmds = append(cmds, c.B().Get().Key(d.seenKey(u)).Build())
			}
		}
		res = c.DoMulti(ctx, cmds...)
	}
	members, err := res[0].AsStrSlice()
	if err != nil {
		return nil, nil, err
	}
	live, err := d.liveNodes(ctx, c, record.NodeLogic, members)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now().UnixMilli()
	out := make(map[string][]record.DeviceLocation)
	var last []int64
	if seen {
		last = make([]int64, len(users))
	}
	for i, u := range users {
		r := res[1+per*i]
		fields, err := r.AsStrMap()
		if err != nil {
			return nil, nil, err
		}
		var locs []record.DeviceLocation
		for dev, v := range fields {
			e, err := parseLocValue(v)
			if err != nil {
				badValues.Inc()
				continue
			}
			n, ok := live[e.Logic]
			if !ok || e.Deadline <= now || e.Written < n.Started {
				continue
			}
			locs = append(locs, record.DeviceLocation{User: u, Device: dev, Logic: e.Logic, Conn: e.Conn, Session: e.Session})
		}
		if len(locs) > 0 {
			slices.SortFunc(locs, func(a, b record.DeviceLocation) int { return strings.Compare(a.Device, b.Device) })
			out[u] = locs
		}
		if seen {
			r := res[2+per*i]
			if err := r.NonRedisError(); err != nil {
				return nil, nil, err
			}
			s, err := r.AsInt64()
			if err != nil {
				if !rueidis.IsRedisNil(err) {
					badValues.Inc() // not a number: unknown
				}
				s = 0
			}
			last[i] = s
		}
	}
	return out, last, nil
}
