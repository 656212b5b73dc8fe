package record

// Fleet records: what the nodes of a fleet tell each other through the
// directory (Redis) and the push pipeline (Kafka). None of them is durable
// state: all can be rebuilt from the store and the live connections.

// Node kinds in the fleet registry.
const (
	NodeLogic    = "logic"
	NodeConnsrv  = "connsrv"
	NodeNotifier = "notifier"
)

// Node is one live process of the fleet as registered in the directory.
type Node struct {
	Kind    string `json:"kind"`    // NodeLogic, NodeConnsrv or NodeNotifier
	ID      string `json:"id"`      // unique per process (config node_id)
	Addr    string `json:"addr"`    // the address peers dial (the tier link for logic nodes); may be empty
	Started int64  `json:"started"` // Unix ms
}

// DeviceLocation says where one online device is connected: the logic node
// that holds its session and the connection node that holds its socket.
type DeviceLocation struct {
	User    string `json:"user"`
	Device  string `json:"device"`
	Logic   string `json:"logic"`   // logic node id
	Conn    string `json:"conn"`    // connection node id
	Session uint64 `json:"session"` // session id on that connection node
}

// PushEvent tells the push pipeline that a recipient had no online device
// when a message was stored. Kafka carries it as JSON keyed by Recipient.
type PushEvent struct {
	Recipient string `json:"recipient"`
	ChatID    string `json:"chat"`
	Seq       uint64 `json:"seq"`
	Sender    string `json:"sender"`
	Preview   string `json:"preview"` // the first 100 bytes of the text
	TS        int64  `json:"ts"`      // Unix ms
}

// Presence is what the directory knows of one user: online (some device
// has a live location) or, when offline, when last seen (Unix ms; 0 when
// unknown).
type Presence struct {
	User     string
	Online   bool
	LastSeen int64
}
