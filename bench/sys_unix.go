//go:build unix

package bench

import (
	"syscall"
	"time"
)

// osReadCPU returns this process's CPU time (getrusage RUSAGE_SELF) and
// the time it was read. With the embedded broker that includes the
// broker's work too.
func osReadCPU() cpuTimes {
	now := time.Now()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTimes{at: now}
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return cpuTimes{tv(ru.Utime), tv(ru.Stime), now}
}

// osFileLimit reads and sets RLIMIT_NOFILE.
func osFileLimit() fileLimiter {
	return fileLimiter{
		get: func() (soft, hard uint64, err error) {
			var lim syscall.Rlimit
			err = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
			return uint64(lim.Cur), uint64(lim.Max), err
		},
		set: func(soft, hard uint64) error {
			return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: soft, Max: hard})
		},
	}
}
