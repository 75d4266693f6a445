// Package auth is herd's access control on NATS: the roles (agent,
// dispatcher, worker, optimizer, operator, admin), the subjects each may
// publish and subscribe to, the accounts that keep agents and the operator
// apart from herd's streams (reply subjects cannot be restricted by
// permissions, so they are mapped across accounts instead), the server
// configuration that grants them (deploy/nats/auth.conf is Render's
// output), and the client and server options for users, passwords and TLS.
//
// Everything a role may do is listed here once; docs/protocol.md
// ("Permissions") explains why each grant exists.
package auth
