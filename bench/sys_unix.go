//go:build unix

package bench

import (
	"fmt"
	"syscall"
)

type cpuTimes struct{ user, sys float64 } // seconds

func (a cpuTimes) sub(b cpuTimes) cpuTimes { return cpuTimes{a.user - b.user, a.sys - b.sys} }

// readCPU returns this process's CPU time (getrusage RUSAGE_SELF). With
// the embedded broker that includes the broker's work too.
func readCPU() cpuTimes {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTimes{}
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return cpuTimes{tv(ru.Utime), tv(ru.Stime)}
}

// ensureFiles makes sure the process may open need file descriptors: it
// raises the soft RLIMIT_NOFILE up to the hard limit when needed, and
// otherwise says exactly what to do, before any connection is opened
// (running out half way through a ramp gives confusing errors).
func ensureFiles(need int) (warning string, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Sprintf("could not read the open-file limit: %v", err), nil
	}
	if lim.Cur >= uint64(need) {
		return "", nil
	}
	if lim.Max >= uint64(need) {
		raised := lim
		raised.Cur = uint64(need)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return "", nil
		}
	}
	return "", &limitError{need: need, soft: lim.Cur, hard: lim.Max}
}

type limitError struct {
	need       int
	soft, hard uint64
}

func (e *limitError) Error() string {
	return fmt.Sprintf("this run needs about %d open files but the limit is %d (hard limit %d)", e.need, e.soft, e.hard)
}
