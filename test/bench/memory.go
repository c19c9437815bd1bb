// This file holds the memory measurement: the bridge's resident set idle and at its
// peak during a large upload, against all of fcgiwrap's processes summed.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory is the result of the memory measurement, in KiB.
type Memory struct {
	UploadBytes int64 `json:"upload_bytes"`
	// cgibridge's one process.
	BridgeIdleStartKiB int64   `json:"cgibridge_idle_start_kib"`  // before any request
	BridgeIdleKiB      int64   `json:"cgibridge_idle_kib"`        // settled after the load runs
	BridgeUploadKiB    []int64 `json:"cgibridge_upload_peak_kib"` // per repeat: peak during the upload
	BridgeBaseKiB      []int64 `json:"cgibridge_upload_base_kib"` // per repeat: just before it
	// fcgiwrap's master and workers, summed.
	FcgiwrapIdleKiB   int64   `json:"fcgiwrap_idle_kib"`
	FcgiwrapUploadKiB []int64 `json:"fcgiwrap_upload_peak_kib"`
	FcgiwrapBaseKiB   []int64 `json:"fcgiwrap_upload_base_kib"`
}

// BridgeRiseKiB is the median rise of the bridge's RSS over its pre-upload value.
func (m Memory) BridgeRiseKiB() int64 { return medianRise(m.BridgeUploadKiB, m.BridgeBaseKiB) }

// FcgiwrapRiseKiB is the median rise of fcgiwrap's summed RSS over its pre-upload value.
func (m Memory) FcgiwrapRiseKiB() int64 { return medianRise(m.FcgiwrapUploadKiB, m.FcgiwrapBaseKiB) }

func medianRise(peak, base []int64) int64 {
	var d []float64
	for i := range min(len(peak), len(base)) {
		d = append(d, float64(peak[i]-base[i]))
	}
	return int64(median(d))
}

// procStatus reads the VmRSS and VmHWM lines of /proc/PID/status, in KiB.
func procStatus(pid int) (rss, hwm int64, err error) {
	v, err := procKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS", "VmHWM")
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	return v[0], v[1], nil
}

// smapsRollup returns the Rss and Pss lines of /proc/PID/smaps_rollup, in
// KiB (Pss divides shared pages among the processes that map them); 0 for a
// process that is gone.
func smapsRollup(pid int) (rss, pss int64) {
	v, err := procKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Rss", "Pss")
	if err != nil {
		return 0, 0
	}
	return v[0], v[1]
}

// procKiB reads the "Name: N kB" lines names of a /proc file, in order.
func procKiB(path string, names ...string) ([]int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(names))
	for line := range strings.Lines(string(data)) {
		name, val, ok := strings.Cut(line, ":")
		f := strings.Fields(val)
		if !ok || len(f) == 0 {
			continue
		}
		for i, want := range names {
			if name == want {
				out[i], _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return out, nil
}

// resetPeak clears pid's VmHWM so that it records the peak of what follows.
func resetPeak(pid int) error {
	// Writing 5 to clear_refs resets the peak RSS (Documentation/filesystems/proc.rst).
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// rssSum returns the summed VmRSS of pids; processes that vanished count 0.
func rssSum(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		if rss, _, err := procStatus(p); err == nil {
			sum += rss
		}
	}
	return sum
}

// sampleWhile samples f every 2 ms while run runs and returns run's error and the
// largest sample.
func sampleWhile(f func() int64, run func() error) (int64, error) {
	var peak int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, f())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	err := run()
	close(stop)
	wg.Wait()
	return max(peak, f()), err
}

// upload POSTs size pseudo-random bytes to the counting program on be and checks
// that all of them arrived.
func (b *Bed) upload(ctx context.Context, be Backend, size int64) error {
	body := io.LimitReader(zeroFree{}, size)
	req, err := http.NewRequestWithContext(ctx, "POST", b.URL(be, countFile), body)
	if err != nil {
		return fmt.Errorf("build upload: %w", err)
	}
	req.ContentLength = size
	resp, err := b.Client.Do(req)
	if err != nil {
		return fmt.Errorf("upload to %s: %w", be.Name, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(got)) != strconv.FormatInt(size, 10) {
		return fmt.Errorf("upload to %s: status %d, program counted %q, want %d", be.Name, resp.StatusCode, got, size)
	}
	return nil
}

// zeroFree is an endless reader of non-zero bytes, so that nothing on the way can
// store the body more cheaply than its size.
type zeroFree struct{}

func (zeroFree) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*131+7) | 1
	}
	return len(p), nil
}

// IdleMemory records the servers' resident sets at rest.
func (b *Bed) IdleMemory(m *Memory, atStart bool) error {
	rss, _, err := procStatus(b.Bridge.PID())
	if err != nil {
		return err
	}
	if atStart {
		m.BridgeIdleStartKiB = rss
	} else {
		m.BridgeIdleKiB = rss
	}
	pids, err := b.FcgiwrapPIDs()
	if err != nil {
		return err
	}
	m.FcgiwrapIdleKiB = rssSum(pids)
	return nil
}

// MeasureUpload uploads size bytes to each backend in turn, repeats times, and
// records each server's resident set just before and at its peak during the upload.
func (b *Bed) MeasureUpload(ctx context.Context, m *Memory, size int64, repeats int) error {
	m.UploadBytes = size
	bpid := b.Bridge.PID()
	for r := range repeats {
		order := []Backend{Cgibridge, Fcgiwrap}
		if r%2 == 1 {
			order = []Backend{Fcgiwrap, Cgibridge}
		}
		for _, be := range order {
			if be == Cgibridge {
				base, _, err := procStatus(bpid)
				if err != nil {
					return err
				}
				if err := resetPeak(bpid); err != nil {
					return fmt.Errorf("reset cgibridge's peak RSS: %w", err)
				}
				peak, err := sampleWhile(func() int64 { r, _, _ := procStatus(bpid); return r },
					func() error { return b.upload(ctx, be, size) })
				if err != nil {
					return err
				}
				if _, hwm, err := procStatus(bpid); err == nil {
					peak = max(peak, hwm) // the kernel's own peak catches what sampling missed
				}
				m.BridgeBaseKiB = append(m.BridgeBaseKiB, base)
				m.BridgeUploadKiB = append(m.BridgeUploadKiB, peak)
				continue
			}
			pids, err := b.FcgiwrapPIDs()
			if err != nil {
				return err
			}
			base := rssSum(pids)
			peak, err := sampleWhile(func() int64 { return rssSum(pids) },
				func() error { return b.upload(ctx, be, size) })
			if err != nil {
				return err
			}
			m.FcgiwrapBaseKiB = append(m.FcgiwrapBaseKiB, base)
			m.FcgiwrapUploadKiB = append(m.FcgiwrapUploadKiB, peak)
		}
	}
	return nil
}
