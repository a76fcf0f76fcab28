package lockertest_test

import (
	"context"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/storage/lockertest"
)

type grantAll struct{}

func (grantAll) NewLock(string) (handler.Lock, error) { return grantAll{}, nil }
func (grantAll) Lock(context.Context, func()) error   { return nil }
func (grantAll) Unlock() error                        { return nil }

func TestBrokenGrantAll(t *testing.T) {
	lockertest.Run(t, func(t *testing.T) handler.Locker { return grantAll{} })
}
