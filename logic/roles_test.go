package logic

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

func TestResolveRoles(t *testing.T) {
	meta := record.Chat{ID: "g:x", Kind: record.KindGroup, CreatedBy: "alice"}
	got, acting := resolveRoles(meta, []record.Member{{User: "alice"}, {User: "bob"}, {User: "carol", Role: record.RoleAdmin, Joined: 4}})
	if acting != "" {
		t.Fatalf("acting %q in a group with admins", acting)
	}
	want := groupRoles{
		"alice": {User: "alice", Role: record.RoleCreator},
		"bob":   {User: "bob", Role: record.RoleMember},
		"carol": {User: "carol", Role: record.RoleAdmin, Joined: 4},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for u, m := range want {
		if got[u] != m {
			t.Fatalf("%s: got %+v, want %+v (rows from before roles: the creator is creator, others members)", u, got[u], m)
		}
	}
}

// TestResolveRolesNoAdmin: a group with members and no admin (its creator
// left before roles existed, or a promotion was lost) has its oldest member
// act as admin; a role this build does not know counts as member.
func TestResolveRolesNoAdmin(t *testing.T) {
	meta := record.Chat{ID: "g:x", Kind: record.KindGroup, CreatedBy: "gone"}
	got, acting := resolveRoles(meta, []record.Member{{User: "zed"}, {User: "bob", Joined: 9}, {User: "amy", Role: 200, Joined: 12}})
	if acting != "zed" || got["zed"].Role != record.RoleAdmin || got["bob"].Role != record.RoleMember || got["amy"].Role != record.RoleMember {
		t.Fatalf("got %+v, want zed (joined first) acting admin, the others members", got)
	}
	if admins, creator := got.adminList(); len(admins) != 1 || admins[0] != "zed" || creator != "" {
		t.Fatalf("adminList: %v %q", admins, creator)
	}
	if g, acting := resolveRoles(meta, nil); len(g) != 0 || acting != "" {
		t.Fatal("an empty group got members")
	}
}

func TestChangeDenied(t *testing.T) {
	g := groupRoles{
		"ann":  {User: "ann", Role: record.RoleCreator},
		"adam": {User: "adam", Role: record.RoleAdmin, Joined: 3},
		"mia":  {User: "mia", Role: record.RoleMember},
	}
	solo := groupRoles{ // adam is the only admin
		"adam": {User: "adam", Role: record.RoleAdmin},
		"mia":  {User: "mia", Role: record.RoleMember},
	}
	tests := []struct {
		name       string
		g          groupRoles
		typ        string
		by, target string
		role       record.Role
		want       string // error code, "" for allowed
	}{
		{"member adds", g, proto.TypeGroupAdd, "mia", "zoe", 0, proto.CodeForbidden},
		{"admin adds", g, proto.TypeGroupAdd, "adam", "zoe", 0, ""},
		{"creator adds", g, proto.TypeGroupAdd, "ann", "zoe", 0, ""},
		{"member removes", g, proto.TypeGroupRemove, "mia", "adam", 0, proto.CodeForbidden},
		{"member removes self", g, proto.TypeGroupRemove, "mia", "mia", 0, ""},
		{"admin removes member", g, proto.TypeGroupRemove, "adam", "mia", 0, ""},
		{"admin removes creator", g, proto.TypeGroupRemove, "adam", "ann", 0, proto.CodeForbidden},
		{"creator removes admin", g, proto.TypeGroupRemove, "ann", "adam", 0, ""},
		{"anyone leaves", g, proto.TypeGroupLeave, "mia", "mia", 0, ""},
		{"member promotes", g, proto.TypeGroupRole, "mia", "mia", record.RoleAdmin, proto.CodeForbidden},
		{"admin promotes", g, proto.TypeGroupRole, "adam", "mia", record.RoleAdmin, ""},
		{"admin demotes creator", g, proto.TypeGroupRole, "adam", "ann", record.RoleMember, proto.CodeForbidden},
		{"creator demotes admin", g, proto.TypeGroupRole, "ann", "adam", record.RoleMember, ""},
		{"admin demotes self, creator stays", g, proto.TypeGroupRole, "adam", "adam", record.RoleMember, ""},
		{"last admin demotes self", solo, proto.TypeGroupRole, "adam", "adam", record.RoleMember, proto.CodeForbidden},
		{"role of a non-member", g, proto.TypeGroupRole, "ann", "zoe", record.RoleAdmin, proto.CodeNotMember},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if e := tt.g.changeDenied(tt.typ, tt.by, tt.target, tt.role); e != nil {
				got = e.Code
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSuccessor(t *testing.T) {
	tests := []struct {
		name    string
		g       groupRoles
		leaving string
		want    string
	}{
		{"last admin: the oldest member", groupRoles{
			"a": {User: "a", Role: record.RoleCreator},
			"z": {User: "z", Role: record.RoleMember},            // initial member (joined 0)
			"b": {User: "b", Role: record.RoleMember, Joined: 5}, // added later
		}, "a", "z"},
		{"ties broken by user id", groupRoles{
			"a": {User: "a", Role: record.RoleAdmin, Joined: 2},
			"d": {User: "d", Role: record.RoleMember, Joined: 7},
			"c": {User: "c", Role: record.RoleMember, Joined: 7},
		}, "a", "c"},
		{"another admin stays", groupRoles{
			"a": {User: "a", Role: record.RoleCreator},
			"b": {User: "b", Role: record.RoleAdmin, Joined: 3},
			"c": {User: "c", Role: record.RoleMember},
		}, "a", ""},
		{"a member leaves", groupRoles{
			"a": {User: "a", Role: record.RoleCreator},
			"c": {User: "c", Role: record.RoleMember},
		}, "c", ""},
		{"the last one leaves", groupRoles{"a": {User: "a", Role: record.RoleCreator}}, "a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.g.successor(tt.leaving); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// failRoleStore refuses SetRole while fail is set.
type failRoleStore struct {
	Store
	fail atomic.Bool
}

func (f *failRoleStore) SetRole(ctx context.Context, chat, user string, role record.Role) error {
	if f.fail.Load() {
		return errors.New("injected SetRole failure")
	}
	return f.Store.SetRole(ctx, chat, user, role)
}

// TestGroupRoles: the creator and admins add and remove members and change
// roles, members cannot; the creator cannot be removed or demoted; the last
// admin cannot step down and, leaving, hands the role to the oldest member
// in the same event; a retried change completes what a failure left.
// (Before, any member could add, only the creator could remove, and a
// group whose creator left could never remove anyone again.)
func TestGroupRoles(t *testing.T) {
	st := &failRoleStore{Store: newMemStore()}
	svc := startService(t, st)
	n := dialNode(t, svc.LinkAddr())
	for i, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		n.open(uint64(i+1), u, "d")
	}
	const alice, bob, dave = 1, 2, 4
	g := n.answer(alice, `{"type":"group_create","id":"g","name":"team","members":["bob","carol"]}`)["chat"].(string)
	do := func(s uint64, id, typ, extra string) map[string]any {
		t.Helper()
		return n.answer(s, `{"type":"`+typ+`","id":"`+id+`","chat":"`+g+`"`+extra+`}`)
	}
	want := func(m map[string]any, code string) {
		t.Helper()
		if code == "" && m["type"] != "ok" || code != "" && m["code"] != code {
			t.Fatalf("got %v, want %s", m, map[bool]string{true: "ok", false: code}[code == ""])
		}
	}
	roles := func(wantAdmins ...string) {
		t.Helper()
		m := do(alice, "m", "members", "")
		var got []string
		for _, a := range m["admins"].([]any) {
			got = append(got, a.(string))
		}
		if !slices.Equal(got, wantAdmins) {
			t.Fatalf("admins: got %v, want %v (%v)", got, wantAdmins, m)
		}
	}
	roles("alice")

	want(do(bob, "b1", "group_add", `,"user":"dave"`), proto.CodeForbidden)
	want(do(bob, "b2", "group_remove", `,"user":"carol"`), proto.CodeForbidden)
	want(do(bob, "b3", "group_role", `,"user":"bob","role":"admin"`), proto.CodeForbidden)
	want(do(alice, "a0", "group_role", `,"user":"bob","role":"owner"`), proto.CodeBadRequest)

	// A role change whose store write fails is completed by its retry.
	st.fail.Store(true)
	if m := do(alice, "a1", "group_role", `,"user":"bob","role":"admin"`); m["type"] != "error" {
		t.Fatalf("role change with the store failing: got %v, want an error", m)
	}
	roles("alice")
	st.fail.Store(false)
	first := do(alice, "a1", "group_role", `,"user":"bob","role":"admin"`)
	want(first, "")
	roles("alice", "bob")
	if again := do(alice, "a1", "group_role", `,"user":"bob","role":"admin"`); again["seq"] != first["seq"] {
		t.Fatalf("retried role change: got %v, want seq %v", again, first["seq"])
	}
	want(do(alice, "a1", "group_role", `,"user":"bob","role":"member"`), proto.CodeIDReused)

	want(do(bob, "b4", "group_add", `,"user":"dave"`), "")
	want(do(bob, "b5", "group_add", `,"user":"erin"`), "")
	want(do(bob, "b6", "group_remove", `,"user":"carol"`), "")
	want(do(bob, "b7", "group_remove", `,"user":"alice"`), proto.CodeForbidden)
	want(do(bob, "b8", "group_role", `,"user":"alice","role":"member"`), proto.CodeForbidden)

	// The creator leaves; bob is still an admin: nobody is promoted.
	if m := do(alice, "a2", "group_leave", ""); m["type"] != "ok" {
		t.Fatalf("creator leaves: %v", m)
	}
	m := do(bob, "m2", "members", "")
	if m["creator"] != nil || len(m["admins"].([]any)) != 1 {
		t.Fatalf("after the creator left: %v, want bob the only admin, no creator", m)
	}
	want(do(bob, "b9", "group_role", `,"user":"bob","role":"member"`), proto.CodeForbidden) // the last admin

	// bob, the last admin, leaves: dave (added before erin) takes over,
	// named in the member_left event itself.
	// The promotion's store write fails; the retried leave completes it.
	st.fail.Store(true)
	if m := do(bob, "b10", "group_leave", ""); m["type"] != "error" {
		t.Fatalf("leave with SetRole failing: got %v, want an error", m)
	}
	st.fail.Store(false)
	leave := do(bob, "b10", "group_leave", "")
	want(leave, "")
	h := do(dave, "h2", "history", `,"before":`+strconv.FormatFloat(leave["seq"].(float64)+1, 'f', -1, 64)+`,"limit":1`)
	body := h["messages"].([]any)[0].(map[string]any)["body"].(string)
	if want := `"promoted":"dave"`; !strings.Contains(body, want) {
		t.Fatalf("member_left event %s, want it to name %s", body, want)
	}
	m = do(dave, "m3", "members", "")
	if admins := m["admins"].([]any); len(admins) != 1 || admins[0] != "dave" {
		t.Fatalf("after the last admin left: %v, want dave admin", m)
	}
	want(do(dave, "d1", "group_add", `,"user":"carol"`), "")
}

// TestRoleEventDoesNotUndoRemoval: a removal whose event is stored but
// whose store write failed is completed by its retry even when the user's
// role changed in between (a role change does not undo a membership
// change; before, the retry answered ok and left the user in the group).
func TestRoleEventDoesNotUndoRemoval(t *testing.T) {
	st := newMemStore()
	svc := startService(t, st)
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "d")
	g := n.answer(1, `{"type":"group_create","id":"g","name":"team","members":["bob"]}`)["chat"].(string)
	st.mu.Lock()
	st.failMembers = 1
	st.mu.Unlock()
	if m := n.answer(1, `{"type":"group_remove","id":"r1","chat":"`+g+`","user":"bob"}`); m["type"] != "error" {
		t.Fatalf("remove with the store failing: got %v, want an error", m)
	}
	if m := n.answer(1, `{"type":"group_role","id":"r2","chat":"`+g+`","user":"bob","role":"admin"}`); m["type"] != "ok" {
		t.Fatalf("role change: %v", m)
	}
	if m := n.answer(1, `{"type":"group_remove","id":"r1","chat":"`+g+`","user":"bob"}`); m["type"] != "ok" {
		t.Fatalf("retried remove: %v", m)
	}
	if ms, _ := st.Members(t.Context(), g); slices.Contains(ms, "bob") {
		t.Fatalf("members %v: bob still in the group after his removal was retried", ms)
	}
}

// TestActingAdminKeepsRole: in a group from before roles whose creator had
// left, the oldest member acts as admin; making another member admin does
// not take the role from them (their role is stored at the first change).
func TestActingAdminKeepsRole(t *testing.T) {
	st := newMemStore()
	meta := record.Chat{ID: "g:legacy", Kind: record.KindGroup, CreatedBy: "gone", CreatedAt: 1}
	if err := st.CreateChat(t.Context(), meta, []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock() // rows from before roles
	st.roles["g:legacy|bob"] = record.Member{User: "bob"}
	st.roles["g:legacy|carol"] = record.Member{User: "carol"}
	st.mu.Unlock()
	svc := startService(t, st)
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "bob", "d")
	if m := n.answer(1, `{"type":"group_role","id":"p","chat":"g:legacy","user":"carol","role":"admin"}`); m["type"] != "ok" {
		t.Fatalf("acting admin promotes carol: %v", m)
	}
	m := n.answer(1, `{"type":"members","id":"m","chat":"g:legacy"}`)
	if admins := m["admins"].([]any); len(admins) != 2 {
		t.Fatalf("admins after the promotion: %v, want bob and carol", m)
	}
	if m := n.answer(1, `{"type":"group_add","id":"a","chat":"g:legacy","user":"dave"}`); m["type"] != "ok" {
		t.Fatalf("bob adds after promoting carol: %v", m)
	}
}
