package record

// UserSettings are a user's privacy settings, one record per user. The
// zero value is what a user who never changed a setting has.
type UserSettings struct {
	// HideLastSeen withholds the user's last-seen time from everyone else
	// (presence answers and pushes show whether the user is online, never
	// when they were last).
	HideLastSeen bool `json:"hide_last_seen"`
}
