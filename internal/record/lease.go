package record

// Lease is one sequencing slot's lease as the store holds it (see
// logic/lease). Chats map to a fixed number of slots; the holder of a
// slot's lease is the only node that assigns seqs to its chats.
type Lease struct {
	Slot int
	// Owner is the holding node's id; "" when the slot is free (never
	// taken, or released).
	Owner string
	// Epoch grows by one with every acquisition of the slot, so a node that
	// sees the same epoch again knows nobody else held the slot meanwhile.
	Epoch uint64
	// Version changes with every write of the row (acquisition, renewal,
	// release); a node waiting to take an expired lease watches it.
	Version uint64
}
