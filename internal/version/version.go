// Package version says which herd this binary is: the version every
// binary prints for --version and each micro service registers.
package version

import (
	"regexp"
	"runtime/debug"
	"strings"
)

// version is herd's version when the build sets it:
//
//	go build -ldflags "-X github.com/sutazai/herd/internal/version.version=1.2.0" ./cmd/...
//
// Without it Version reads the module version the Go toolchain stamps
// into the binary (runtime/debug.ReadBuildInfo): a tag such as v1.2.0,
// or a pseudo-version v0.0.0-<commit time>-<commit>[+dirty] for a build
// in a git checkout.
var version string

// String returns herd's version: the -ldflags variable when set, else
// the binary's module version from its build information, else
// "(devel)". Every herd binary prints it for --version.
func String() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// semVer is the semantic version 2.0 grammar (semver.org), which NATS
// micro services require.
var semVer = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// SemVer returns String without its leading "v" when that is a semantic
// version, else "0.0.0-devel": what `nats micro info` shows.
func SemVer() string {
	if v := strings.TrimPrefix(String(), "v"); semVer.MatchString(v) {
		return v
	}
	return "0.0.0-devel"
}
