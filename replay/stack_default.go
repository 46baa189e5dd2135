package replay

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/streamlens/streamlens/alarms"
	"github.com/streamlens/streamlens/deploy"
	"github.com/streamlens/streamlens/slo"
)

// decode normalises a module (Go maps or JSON bytes) to what the .tf.json
// decodes to, so that both replay alike.
func decode(v any) (map[string]any, error) {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("module: %w", err)
		}
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("module: %w", err)
	}
	return out, nil
}

// DefaultStack is the example stack (deploy/main.tf.json) with the alarms
// and slo modules generated from specs: what `make generate` writes.
func DefaultStack(specs []slo.Spec, vars map[string]any) (*Stack, error) {
	root, err := decode(deploy.Main)
	if err != nil {
		return nil, err
	}
	a, err := decode(alarms.Module())
	if err != nil {
		return nil, err
	}
	s, err := decode(slo.Module(specs))
	if err != nil {
		return nil, err
	}
	return NewStack(root, map[string]map[string]any{"alarms": a, "slo": s}, vars)
}

// DirStack reads a repository-shaped tree: dir/deploy/main.tf.json (the
// root; absent: the modules stand alone), dir/alarms/alarms.tf.json and
// dir/slo/slo.tf.json — the committed files, or a user's edited copies.
func DirStack(dir string, vars map[string]any) (*Stack, error) {
	mods := map[string]map[string]any{}
	for name, file := range map[string]string{"alarms": "alarms/alarms.tf.json", "slo": "slo/slo.tf.json"} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		if mods[name], err = decode(b); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	var root map[string]any
	if b, err := os.ReadFile(filepath.Join(dir, "deploy/main.tf.json")); err == nil {
		if root, err = decode(b); err != nil {
			return nil, fmt.Errorf("deploy/main.tf.json: %w", err)
		}
	}
	return NewStack(root, mods, vars)
}
