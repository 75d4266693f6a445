// Package perf holds herd's performance suite (make bench). Each benchmark
// measures a baseline in the same process and prints herd's figures as
// ratios against it; absolute times on a shared 2-core machine mean
// little, ratios do.
package perf
