// Package events carries push events (record.PushEvent) over Kafka: the
// logic tier publishes one when a message is stored for a recipient with no
// online device, and the notifier consumes them to send Web Push and
// webhooks.
//
// # Wire format
//
// Topic Config.Topic (default "message_events"). Record key: the recipient's
// user id, so all events of one recipient land in one partition (Kafka's
// murmur2 key hash, the same as the Java client's default partitioner) and
// are consumed in order. Record value: the JSON of record.PushEvent with its
// field tags (see codec.go). The topic is created with Config.Partitions
// partitions; changing the partition count of a live topic moves recipients
// between partitions, and only order across the change is lost.
//
// Dead letters go to Config.DLQTopic with the original key and value and
// these headers (all values UTF-8 text):
//
//	error      the last handler error, or the decode error
//	reason     "handler" (retries exhausted) or "decode" (undecodable value)
//	attempts   handler attempts made (0 for "decode")
//	topic      source topic
//	partition  source partition
//	offset     source offset
//
// # Delivery guarantees
//
// The Producer is idempotent with acks=all: a record Kafka acknowledged is
// on every in-sync replica and retries never duplicate it. Publish never
// waits for the broker; a record that cannot be delivered within
// Config.ProduceTimeout is dropped, logged (throttled) and counted. Push
// events are best effort: the message itself is durable in the store, so a
// lost event costs one notification, never a message.
//
// Consume is at least once: a record's offset is committed only after its
// handler succeeded or it went to the dead-letter topic. A consumer that
// stops (or crashes) before committing sees its uncommitted records again,
// so handlers must tolerate duplicates (the notifier keys on recipient,
// chat and seq). The same holds for dead letters: a record dead-lettered
// just before a stop may be dead-lettered again by the next member. Records of one partition are handled one at a time, in
// order; partitions are handled concurrently.
//
// Tested against one broker: these tests exercise our producer, consumer
// and dead-letter logic, not Kafka's replication (ReplicationFactor 1).
//
// # Concurrency
//
// Producer methods are safe for concurrent use. Consume blocks its caller
// and calls the handler from one goroutine per partition being processed.
//
// Tier: shared by logic (producer) and the notifier (consumer); imports
// only internal/record of ours.
package events
