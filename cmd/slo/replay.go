package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/streamlens/streamlens/replay"
	"github.com/streamlens/streamlens/slo"
)

// varFlags collects repeated -var name=value (a number, true/false, or a
// string).
type varFlags map[string]any

func (v varFlags) String() string { return fmt.Sprint(map[string]any(v)) }

func (v varFlags) Set(s string) error {
	k, val, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("-var %q: want name=value", s)
	}
	if f, err := strconv.ParseFloat(val, 64); err == nil {
		v[k] = f
	} else if b, err := strconv.ParseBool(val); err == nil {
		v[k] = b
	} else {
		v[k] = val
	}
	return nil
}

// loadSpecs is --spec, or the shipped spec embedded in the binary.
func loadSpecs(path string) ([]slo.Spec, error) {
	if path == "" {
		return slo.Shipped()
	}
	return slo.Load(path)
}

// runReplay replays scenario files through the alarms and prints what
// each topic hears; it fails when a scenario's expectations do not hold.
func runReplay(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var scenarios []string
	fs.Func("scenario", "scenario file (JSON; repeatable, or give the files as arguments)", func(s string) error {
		scenarios = append(scenarios, s)
		return nil
	})
	specPath := fs.String("spec", "", "SLO spec file (default: the shipped slo/slos.json, embedded)")
	dir := fs.String("tf", "", "replay the Terraform in this tree (DIR/alarms/alarms.tf.json, DIR/slo/slo.tf.json, DIR/deploy/main.tf.json if present) instead of generating it from --spec")
	vars := varFlags{}
	fs.Var(vars, "var", "override a Terraform variable: name=value for the root's (deploy/main.tf.json), module.name=value for a module's (repeatable)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	scenarios = append(scenarios, fs.Args()...)
	if len(scenarios) == 0 {
		return errors.New("no scenario: give -scenario FILE")
	}
	specs, err := loadSpecs(*specPath)
	if err != nil {
		return err
	}
	var results []*replay.Result
	failed := 0
	for _, path := range scenarios {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s, err := replay.ParseScenario(b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		all := map[string]any{}
		for k, v := range s.Vars {
			all[k] = v
		}
		for k, v := range vars { // the command line wins over the file
			all[k] = v
		}
		var st *replay.Stack
		if *dir != "" {
			st, err = replay.DirStack(*dir, all)
		} else {
			st, err = replay.DefaultStack(specs, all)
		}
		if err != nil {
			return err
		}
		res, err := replay.Replay(st, s)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		results = append(results, res)
		if len(res.Failures) > 0 {
			failed++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else if err := printResults(out, results); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d scenarios failed their expectations", failed, len(results))
	}
	return nil
}

func printResults(w io.Writer, results []*replay.Result) error {
	for _, r := range results {
		verdict := "ok"
		if len(r.Failures) > 0 {
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "%s: %d notifications, %s\n", r.Scenario, len(r.Notifications), verdict)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, n := range r.Notifications {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t→ %s\n", n.At, n.State, n.Alarm, n.Topic)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  expected: %s\n", f)
		}
	}
	return nil
}
