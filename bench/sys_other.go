//go:build !unix

package bench

import (
	"math"
	"time"
)

func osReadCPU() cpuTimes { return cpuTimes{at: time.Now()} }

// osFileLimit reports no limit where RLIMIT_NOFILE does not exist.
func osFileLimit() fileLimiter {
	return fileLimiter{
		get: func() (uint64, uint64, error) { return math.MaxUint64, math.MaxUint64, nil },
		set: func(uint64, uint64) error { return nil },
	}
}
