// This file holds reqLog, a request's logger made only when something is
// logged: most requests log nothing but their access line, and building an
// hclog logger with fields for each one is a measurable part of a warm
// request's cost.

package cgi

import (
	"sync"

	"github.com/hashicorp/go-hclog"
)

type reqLog struct {
	mu   sync.Mutex
	base hclog.Logger
	kv   []any        // the request's fields so far
	l    hclog.Logger // base.With(kv...), made on demand
}

func newReqLog(base hclog.Logger, kv ...any) *reqLog {
	return &reqLog{base: base, kv: kv}
}

// with adds fields to every later line.
func (z *reqLog) with(kv ...any) {
	z.mu.Lock()
	z.kv = append(z.kv, kv...)
	z.l = nil
	z.mu.Unlock()
}

func (z *reqLog) get() hclog.Logger {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.l == nil {
		z.l = z.base.With(z.kv...)
	}
	return z.l
}

func (z *reqLog) Debug(msg string, args ...any) {
	if z.base.IsDebug() {
		z.get().Debug(msg, args...)
	}
}
func (z *reqLog) Info(msg string, args ...any)  { z.get().Info(msg, args...) }
func (z *reqLog) Warn(msg string, args ...any)  { z.get().Warn(msg, args...) }
func (z *reqLog) Error(msg string, args ...any) { z.get().Error(msg, args...) }
