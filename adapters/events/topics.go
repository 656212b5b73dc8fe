package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ensureTopics creates cfg.Topic and cfg.DLQTopic when missing, then waits
// until every partition of both has a leader, so the first produce does
// not race the new topic's metadata. Existing topics are left as they are
// (a different partition count is logged, not changed).
func ensureTopics(ctx context.Context, cl *kgo.Client, cfg Config, log *slog.Logger) error {
	adm := kadm.NewClient(cl)
	topics := []string{cfg.Topic, cfg.DLQTopic}
	resp, err := adm.CreateTopics(ctx, int32(cfg.Partitions), int16(cfg.ReplicationFactor), nil, topics...)
	if err != nil {
		return fmt.Errorf("cannot create topics %v: %w", topics, err)
	}
	for _, t := range topics {
		r, ok := resp[t]
		switch {
		case !ok:
			return fmt.Errorf("cannot create topic %s: no answer from the controller", t)
		case r.Err == nil:
			log.Info("created kafka topic", "topic", t, "partitions", cfg.Partitions, "replication_factor", cfg.ReplicationFactor)
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
		default:
			return fmt.Errorf("cannot create topic %s: %w", t, r.Err)
		}
	}

	// Wait for leaders: a freshly created topic takes a moment to reach
	// every broker's metadata.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		md, err := adm.ListTopics(wctx, topics...)
		if err == nil {
			var missing error
			for _, t := range topics {
				d, ok := md[t]
				switch {
				case !ok || d.Err != nil:
					missing = fmt.Errorf("topic %s not in metadata yet: %v", t, d.Err)
				case len(d.Partitions) == 0:
					missing = fmt.Errorf("topic %s has no partitions yet", t)
				default:
					for _, p := range d.Partitions {
						if p.Leader < 0 || p.Err != nil {
							missing = fmt.Errorf("topic %s partition %d has no leader yet", t, p.Partition)
							break
						}
					}
				}
			}
			if missing == nil {
				if n := len(md[cfg.Topic].Partitions); n != cfg.Partitions {
					log.Warn("kafka topic exists with another partition count; keeping it",
						"partitions", n, "configured", cfg.Partitions)
				}
				return nil
			}
			err = missing
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("cannot see topics %v ready: %w (last: %v)", topics, wctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
