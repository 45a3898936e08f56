package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// envDurabilityDB names the database the durability writer writes to; the
// helper test does nothing unless it is set.
const envDurabilityDB = "LATCH_STORE_DURABILITY_DB"

// TestDurabilityWriter is the child of TestDurabilityKill9: it commits
// updates in a loop and prints the id of each one after Update returns.
func TestDurabilityWriter(t *testing.T) {
	path := os.Getenv(envDurabilityDB)
	if path == "" {
		return // only a helper: TestDurabilityKill9 runs it in a subprocess
	}
	s, err := OpenSQLite(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 1; i <= 100000 && time.Now().Before(deadline); i++ {
		err := s.Update(context.Background(), func(tx Tx) error {
			id, err := tx.AppendAudit(AuditEntry{Time: time.Now(), Action: "write", Object: strconv.Itoa(i)})
			if err != nil {
				return err
			}
			if id != int64(i) {
				return fmt.Errorf("audit id %d, want %d", id, i)
			}
			return tx.PutMeta(fmt.Sprintf("k%06d", i), strconv.Itoa(i))
		})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Printf("committed %d\n", i) // os.Stdout is unbuffered
	}
	os.Exit(0)
}

// TestDurabilityKill9 kills a writer with SIGKILL while it commits and
// checks that every update it reported as committed is in the database.
func TestDurabilityKill9(t *testing.T) {
	if os.Getenv(envDurabilityDB) != "" {
		return // running as the helper's subprocess
	}
	const killAfter = 150
	path := filepath.Join(t.TempDir(), "latch.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurabilityWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), envDurabilityDB+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()

	var committed []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, "committed "); ok {
			n, err := strconv.Atoi(id)
			if err != nil {
				t.Fatalf("writer printed %q", line)
			}
			committed = append(committed, n)
			if len(committed) == killAfter {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
			}
			continue
		}
		if strings.HasPrefix(line, "error") {
			t.Errorf("writer: %s", line)
		}
	}
	err = cmd.Wait()
	if len(committed) < killAfter {
		t.Fatalf("writer reported only %d commits before it ended (%v)", len(committed), err)
	}
	if ws, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !ws.Signaled() {
		t.Logf("writer was not killed by a signal: %v", cmd.ProcessState)
	}
	last := committed[len(committed)-1]
	t.Logf("writer killed after reporting %d commits", last)

	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	view(t, s, func(tx Tx) error {
		for _, i := range committed {
			v, err := tx.GetMeta(fmt.Sprintf("k%06d", i))
			if err != nil || v != strconv.Itoa(i) {
				t.Errorf("update %d was reported committed, but meta reads %q, %v", i, v, err)
			}
		}
		audit, err := tx.ListAudit(0)
		if err != nil {
			return err
		}
		if len(audit) < last {
			t.Errorf("%d audit entries, want at least %d", len(audit), last)
		}
		// Whatever else was committed is whole: audit entry and meta together.
		for _, e := range audit {
			i, _ := strconv.Atoi(e.Object)
			if _, err := tx.GetMeta(fmt.Sprintf("k%06d", i)); err != nil {
				t.Errorf("audit entry %d without its meta write: %v", e.ID, err)
			}
		}
		return nil
	})
}
