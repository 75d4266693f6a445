package managed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BinaryEnv names the environment variable that overrides where the Ollama
// binary is.
const BinaryEnv = "HERD_OLLAMA_BIN"

// FindBinary returns the Ollama binary to run when Config.Binary is empty:
// $HERD_OLLAMA_BIN if set, else RepoBinary, else ollama on $PATH. It
// returns ErrNoBinary when there is none.
func FindBinary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		return checkBinary(p)
	}
	if p, err := RepoBinary(); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("ollama"); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("%w: set %s, or install the pinned build with scripts/tools.sh", ErrNoBinary, BinaryEnv)
}

// RepoBinary returns bin/ollama in the working directory, or in the
// nearest directory above it that holds a go.mod (the module root, where
// scripts/tools.sh installs it). It returns ErrNoBinary when there is none.
func RepoBinary() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoBinary, err)
	}
	for {
		if p, err := checkBinary(filepath.Join(dir, "bin", "ollama")); err == nil {
			return p, nil
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("%w: no bin/ollama at the module root", ErrNoBinary)
}

// checkBinary returns the absolute path of p if it is an executable file.
func checkBinary(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoBinary, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoBinary, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s is not an executable file", ErrNoBinary, abs)
	}
	return abs, nil
}
