package record

// PushSubscription is one device's registration for push notifications:
// a Web Push (RFC 8030) endpoint and the keys the browser or UnifiedPush
// distributor gave for it (PushSubscription.toJSON() in a browser). There
// is at most one per (User, Device); a new one replaces the old.
type PushSubscription struct {
	User      string `json:"user"`
	Device    string `json:"device"`
	Endpoint  string `json:"endpoint"`   // the push service URL to POST to
	P256dh    string `json:"p256dh"`     // base64url (no padding) uncompressed P-256 point, 65 bytes decoded
	Auth      string `json:"auth"`       // base64url (no padding) auth secret, 16 bytes decoded
	CreatedAt int64  `json:"created_at"` // Unix ms
}
