package directory

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/redis/rueidis"
)

// Register (re)registers n as live for NodeTTL: it stores the record at
// <prefix>node:{kind}:<id> with that TTL and adds the id to the kind's
// member set. Callers repeat it every NodeTTL/3 (see Heartbeat). For a
// logic node, n.Started must be the process start in unix ms by the clock
// its Attach calls use: locations written before it are a previous
// process's and read as dead (0 turns that check off). Safe for concurrent
// use.
func (d *Directory) Register(ctx context.Context, n record.Node) error {
	err := d.call(ctx, opRegister, func(ctx context.Context, c rueidis.Client) error {
		rec, err := json.Marshal(n)
		if err != nil {
			return err
		}
		// In this order on one connection (one slot): a reader that sees the
		// id in the set finds its record, unless it expired since.
		for _, r := range c.DoMulti(ctx,
			c.B().Set().Key(d.nodeKey(n.Kind, n.ID)).Value(string(rec)).PxMilliseconds(ms(d.cfg.NodeTTL)).Build(),
			// SADD of a present member changes nothing, so it does not
			// invalidate other nodes' cached member sets.
			c.B().Sadd().Key(d.nodesKey(n.Kind)).Member(n.ID).Build(),
		) {
			if err := r.Error(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot register %s node %s: %w", n.Kind, n.ID, err)
	}
	return nil
}

// Deregister removes n from the registry at once (a clean shutdown); its
// device locations stop being live for readers. Safe for concurrent use.
func (d *Directory) Deregister(ctx context.Context, n record.Node) error {
	err := d.call(ctx, opDeregister, func(ctx context.Context, c rueidis.Client) error {
		for _, r := range c.DoMulti(ctx,
			c.B().Srem().Key(d.nodesKey(n.Kind)).Member(n.ID).Build(),
			c.B().Del().Key(d.nodeKey(n.Kind, n.ID)).Build(),
		) {
			if err := r.Error(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot deregister %s node %s: %w", n.Kind, n.ID, err)
	}
	return nil
}

// Nodes returns the live nodes of kind, sorted by ID. Reads are served from
// the client-side cache while Redis has not invalidated them. Safe for
// concurrent use.
func (d *Directory) Nodes(ctx context.Context, kind string) ([]record.Node, error) {
	var out []record.Node
	err := d.call(ctx, opNodes, func(ctx context.Context, c rueidis.Client) error {
		members, err := c.DoCache(ctx, c.B().Smembers().Key(d.nodesKey(kind)).Cache(), d.cfg.CacheTTL).AsStrSlice()
		if err != nil {
			return err
		}
		live, err := d.liveNodes(ctx, c, kind, members)
		if err != nil {
			return err
		}
		out = make([]record.Node, 0, len(live))
		for _, n := range live {
			out = append(out, n)
		}
		slices.SortFunc(out, func(a, b record.Node) int { return strings.Compare(a.ID, b.ID) })
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list %s nodes: %w", kind, err)
	}
	return out, nil
}

// liveNodes reads the records of the member ids of kind (through the
// client-side cache) and returns those still registered, by id. Ids whose
// record expired are removed from the member set.
func (d *Directory) liveNodes(ctx context.Context, c rueidis.Client, kind string, ids []string) (map[string]record.Node, error) {
	live := make(map[string]record.Node, len(ids))
	if len(ids) == 0 {
		return live, nil
	}
	cmds := make([]rueidis.CacheableTTL, len(ids))
	for i, id := range ids {
		cmds[i] = rueidis.CT(c.B().Get().Key(d.nodeKey(kind, id)).Cache(), d.cfg.CacheTTL)
	}
	var gone []string
	for i, r := range c.DoMultiCache(ctx, cmds...) {
		b, err := r.AsBytes()
		if rueidis.IsRedisNil(err) {
			gone = append(gone, ids[i])
			continue
		}
		if err != nil {
			return nil, err
		}
		var n record.Node
		if err := json.Unmarshal(b, &n); err != nil || n.ID != ids[i] {
			badValues.Inc()
			continue
		}
		live[n.ID] = n
	}
	if len(gone) > 0 {
		d.pruneNodes(ctx, c, kind, gone)
	}
	return live, nil
}

// pruneNodes removes ids from the member set of kind if their records are
// still gone (atomically: a node registering meanwhile stays). Best effort.
func (d *Directory) pruneNodes(ctx context.Context, c rueidis.Client, kind string, ids []string) {
	keys := make([]string, 1, 1+len(ids))
	keys[0] = d.nodesKey(kind)
	for _, id := range ids {
		keys = append(keys, d.nodeKey(kind, id))
	}
	if n, err := pruneNodesScript.run(ctx, c, keys, ids).AsInt64(); err != nil {
		d.log.Debug("cannot prune expired nodes", "kind", kind, "err", err)
	} else if n > 0 {
		d.log.Info("pruned expired nodes from the directory", "kind", kind, "nodes", n)
	}
}

// Heartbeat registers n now and every `every` (NodeTTL/3 when not
// positive) until ctx ends, then deregisters it. It logs only changes of
// state: "directory down" on the first failure, "directory back" on the
// first success after failures. It blocks; run it in its own goroutine.
// Safe for concurrent use.
func (d *Directory) Heartbeat(ctx context.Context, n record.Node, every time.Duration) {
	if every <= 0 {
		every = d.cfg.NodeTTL / 3
	}
	up := true
	beat := func() {
		err := d.Register(ctx, n)
		switch {
		case err != nil && up && ctx.Err() == nil:
			up = false
			d.log.Warn("directory down", "kind", n.Kind, "node", n.ID, "err", err)
		case err == nil && !up:
			up = true
			d.log.Info("directory back", "kind", n.Kind, "node", n.ID)
		}
	}
	beat()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.Timeout)
			if err := d.Deregister(dctx, n); err != nil {
				d.log.Warn("cannot deregister from the directory", "kind", n.Kind, "node", n.ID, "err", err)
			}
			cancel()
			return
		case <-t.C:
			beat()
		}
	}
}
