package record

import (
	"fmt"
	"strconv"
)

// ChatAppend is one chat's part of a store append: messages of a single
// chat with dense, ascending seqs, written by the sequencer that holds the
// chat's slot at Epoch.
type ChatAppend struct {
	// Epoch is the writer's lease epoch for the chat's slot (see
	// logic/lease). Stores that fence stale writers by epoch stamp every
	// row with it; 0 where sequencing is not under leases (the embedded
	// store, or CQL in LWT mode), and such stores ignore it.
	Epoch uint64
	// Msgs are the messages, all of one chat, Msgs[i].Seq = Msgs[0].Seq+i.
	Msgs []Message
}

// ChatID returns the chat of the append ("" when it has no messages).
func (a ChatAppend) ChatID() string {
	if len(a.Msgs) == 0 {
		return ""
	}
	return a.Msgs[0].ChatID
}

// Validate checks that the append names one chat and dense ascending seqs
// starting at 1 or above.
func (a ChatAppend) Validate() error {
	if len(a.Msgs) == 0 {
		return fmt.Errorf("append without messages")
	}
	chat := a.Msgs[0].ChatID
	if chat == "" {
		return fmt.Errorf("message with an empty chat id")
	}
	for i := range a.Msgs {
		m := &a.Msgs[i]
		if m.ChatID != chat {
			return fmt.Errorf("append of chat %s holds a message of chat %s", chat, m.ChatID)
		}
		if m.Seq == 0 || m.Seq != a.Msgs[0].Seq+uint64(i) {
			return fmt.Errorf("append of chat %s: seq %s at position %d, want dense ascending seqs from 1 up", chat, strconv.FormatUint(m.Seq, 10), i)
		}
	}
	return nil
}

// AppendResult is the outcome of one ChatAppend. Appends of different chats
// never affect each other: a conflict or an error in one chat leaves the
// others' results alone.
//
// Appending a message that is already stored with identical content (every
// field equal) counts as storing it: that is how a writer finds out what
// happened to an append whose outcome was unknown (retry it unchanged).
type AppendResult struct {
	// Stored is how many leading messages of the append are durably
	// stored (len(Msgs) when Err is nil).
	Stored int
	// Err is nil when every message is stored. With ErrConflict, Msgs[:Stored]
	// are stored and none of Msgs[Stored:] was stored by this call: a seq
	// among them already holds a different message. With ErrInvalid the
	// append broke the contract and nothing of it was stored. Any other
	// error leaves the outcome of Msgs[Stored:] unknown (some may be
	// stored, and readers may see them); the writer must append them again,
	// unchanged, until the outcome is known, and never give those seqs to
	// other messages.
	Err error
}
