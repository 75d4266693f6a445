package config

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logger returns a zap logger writing to stderr at log.level, as JSON or
// console text per log.format ("auto": console when stderr is a terminal).
// It returns an error for a level or format that Validate would reject.
func (c Config) Logger() (*zap.Logger, error) {
	zc, err := c.Log.zapConfig(isTerminal(os.Stderr))
	if err != nil {
		return nil, err
	}
	return zc.Build()
}

// zapConfig is the zap configuration for c; terminal says whether stderr is
// a terminal.
func (c LogConfig) zapConfig(terminal bool) (zap.Config, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil || level < zapcore.DebugLevel || level > zapcore.ErrorLevel {
		return zap.Config{}, &KeyError{Key: "log.level", Err: fmt.Errorf("level %q must be debug, info, warn or error", c.Level)}
	}
	switch c.Format {
	case "auto", "json", "console":
	default:
		return zap.Config{}, &KeyError{Key: "log.format", Err: fmt.Errorf("format %q must be auto, json or console", c.Format)}
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	if c.Format == "console" || c.Format == "auto" && terminal {
		zc.Encoding = "console"
		zc.EncoderConfig = zap.NewDevelopmentEncoderConfig()
	}
	return zc, nil
}

// isTerminal reports whether f is a character device such as a terminal.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
