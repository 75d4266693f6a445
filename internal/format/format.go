// Package format writes quantities for people to read: byte counts in
// binary units. It is the one place herd's commands and reports format
// them, so `herd status` and `herd capture status` say the same.
package format

import "fmt"

// IEC formats a byte count with binary (IEC) units: "512 B", "1.5 KiB",
// "3.0 GiB".
func IEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
