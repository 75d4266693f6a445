// Package sched is herd's priority policy: in which order to serve the
// high, normal and low queues, with ageing so that a lower priority is
// never starved, and how many slots each priority may hold. It is pure: the
// caller passes the time.
package sched
