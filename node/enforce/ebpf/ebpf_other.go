//go:build !linux

package ebpf

import (
	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/view"
)

var _ enforce.Enforcer = (*Enforcer)(nil)

// Enforcer is unavailable on this OS; Load returns ErrUnsupported.
type Enforcer struct{}

// Load returns ErrUnsupported.
func Load(pinDir string) (*Enforcer, error) { return nil, ErrUnsupported }

// Remove returns ErrUnsupported.
func Remove(pinDir string) error { return ErrUnsupported }

func (e *Enforcer) AttachTCX(ifindex int) error   { return ErrUnsupported }
func (e *Enforcer) Apply(v *view.View) error      { return ErrUnsupported }
func (e *Enforcer) Events() <-chan enforce.Event  { return nil }
func (e *Enforcer) Counters() (Counters, error)   { return Counters{}, ErrUnsupported }
func (e *Enforcer) Stats() (enforce.Stats, error) { return enforce.Stats{}, ErrUnsupported }
func (e *Enforcer) Close() error                  { return nil }

func (e *Enforcer) SetCgroups(cgroups map[string]string) error { return ErrUnsupported }
func (e *Enforcer) AttachCgroup(root string) error             { return ErrUnsupported }

// CgroupRoot returns ErrUnsupported.
func CgroupRoot() (string, error) { return "", ErrUnsupported }
