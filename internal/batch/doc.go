// Package batch packs items into per-key batches of up to Size items, closed
// when full or when the oldest item has waited MaxWait. It is pure: the
// caller passes the time, and decides when to flush early (herd flushes
// everything as soon as no more input is waiting, so a lone request at low
// load is never held back).
package batch
