package lockertest_test

import (
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"

	"github.com/uploadgate/uploadgate/storage/lockertest"
)

// tusd's memorylocker defines the semantics the suite checks.
func TestMemoryLocker(t *testing.T) {
	lockertest.Run(t, func(t *testing.T) handler.Locker { return memorylocker.New() })
}
