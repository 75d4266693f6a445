// Package config is herd's configuration: one Config holding every
// package's settings, its defaults, and Load, which layers defaults in code,
// config/herd.yaml, HERD_* environment variables and command-line flags, in
// that order. It is the only package that imports koanf; every other package
// receives its plain Config struct.
//
// Environment variables: HERD_ followed by the koanf path upper-cased, with a
// double underscore between levels: HERD_DISPATCHER__BATCH_SIZE=8 sets
// dispatcher.batch_size, HERD_DISPATCHER__SCHED__LOW_AGE_AFTER=5s sets
// dispatcher.sched.low_age_after. List settings take comma-separated values
// (HERD_WORKER__MODELS=tinyllama,herd-tiny). Every HERD_ variable must name
// a setting; an unknown one is an error, so that a typo is not ignored.
// OLLAMA_HOST is used for ollama.url when no layer sets it.
package config
