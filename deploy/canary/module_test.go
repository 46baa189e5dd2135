package canary

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	m "github.com/streamlens/streamlens/metrics"
)

// The committed module is exactly what the generator writes today.
func TestCommittedFileIsGenerated(t *testing.T) {
	want, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(File)
	if err != nil {
		t.Fatalf("%v (run go generate ./deploy/canary)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s is stale: run go generate ./deploy/canary", File)
	}
}

type module struct {
	Variable map[string]struct {
		Default any `json:"default"`
	} `json:"variable"`
	Resource struct {
		Alarms map[string]struct {
			MetricName        string            `json:"metric_name"`
			Namespace         string            `json:"namespace"`
			Dimensions        map[string]string `json:"dimensions"`
			Statistic         string            `json:"statistic"`
			ExtendedStatistic string            `json:"extended_statistic"`
			Description       string            `json:"alarm_description"`
			Missing           string            `json:"treat_missing_data"`
		} `json:"aws_cloudwatch_metric_alarm"`
		Function map[string]struct {
			Environment struct {
				Variables map[string]string `json:"variables"`
			} `json:"environment"`
		} `json:"aws_lambda_function"`
		Schedule map[string]struct {
			Target struct {
				Arn string `json:"arn"`
			} `json:"target"`
		} `json:"aws_scheduler_schedule"`
	} `json:"resource"`
}

func load(t *testing.T) (module, string) {
	t.Helper()
	b, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	var mod module
	if err := json.Unmarshal(b, &mod); err != nil {
		t.Fatal(err)
	}
	return mod, string(b)
}

// The alarms watch the caller's metrics under the canary's own dimension:
// TTFB at p99, truncation, and the canary's silence; each has its runbook
// section in docs/probe.md, and every variable they name is declared.
func TestAlarms(t *testing.T) {
	mod, text := load(t)
	defined := map[string]bool{}
	for _, d := range m.ProbeDefs() {
		defined[d.Name] = true
	}
	doc, err := os.ReadFile("../../docs/probe.md")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ttfb_p99": m.CallerTimeToFirstByte + "/p99", "truncation": m.CallerTruncated + "/Sum", "silent": m.CallerTruncated + "/SampleCount"}
	if len(mod.Resource.Alarms) != len(want) {
		t.Errorf("%d alarms", len(mod.Resource.Alarms))
	}
	for k, a := range mod.Resource.Alarms {
		if got := a.MetricName + "/" + a.Statistic + a.ExtendedStatistic; got != want[k] || !defined[a.MetricName] {
			t.Errorf("%s watches %s, want %s", k, got, want[k])
		}
		if a.Namespace != "${var.namespace}" || len(a.Dimensions) != 1 || a.Dimensions[m.DimProbe] != "${var.probe_name}" {
			t.Errorf("%s: namespace %q dimensions %v", k, a.Namespace, a.Dimensions)
		}
		anchor := regexp.MustCompile(`#(canary-[a-z0-9-]+)$`).FindStringSubmatch(a.Description)
		if anchor == nil || !strings.Contains(string(doc), `<a name="`+anchor[1]+`"></a>`) {
			t.Errorf("%s: no runbook section in docs/probe.md for %q", k, a.Description)
		}
	}
	// Silence is the one alarm for which no data is bad news.
	if mod.Resource.Alarms["silent"].Missing != "breaching" || mod.Resource.Alarms["truncation"].Missing != "notBreaching" {
		t.Error("treat_missing_data: silent must breach, the others not")
	}
	for _, v := range regexp.MustCompile(`var\.([a-z0-9_]+)`).FindAllStringSubmatch(text, -1) {
		if _, ok := mod.Variable[v[1]]; !ok {
			t.Errorf("var.%s is used but not declared", v[1])
		}
	}
}

// Every variable the module gives the canary is one the canary reads, and
// the schedule invokes the canary.
func TestWiring(t *testing.T) {
	mod, _ := load(t)
	var src strings.Builder
	for _, glob := range []string{"../../examples/canary/*.go", "../../internal/probe/*.go"} {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
	}
	vars := mod.Resource.Function["canary"].Environment.Variables
	if len(vars) == 0 {
		t.Fatal("no environment")
	}
	for name := range vars {
		if !strings.Contains(src.String(), `"`+name+`"`) && !strings.HasPrefix(name, "STREAMLENS_OTLP") {
			t.Errorf("%s is set but neither examples/canary nor internal/probe reads it", name)
		}
	}
	if mod.Resource.Schedule["canary"].Target.Arn != "${aws_lambda_function.canary.arn}" {
		t.Errorf("the schedule targets %q", mod.Resource.Schedule["canary"].Target.Arn)
	}
}

// terraform init, validate and plan (dummy credentials, offline) of the
// module wired as a user would, against the AWS provider's filesystem
// mirror, as scripts/tf-check.sh does for the other modules. Skipped loudly
// when terraform or the mirror is missing.
func TestTerraform(t *testing.T) {
	mirror := os.Getenv("TF_PROVIDER_MIRROR")
	if mirror == "" {
		mirror = "/opt/tf-plugins"
	}
	tf, err := exec.LookPath("terraform")
	if _, serr := os.Stat(filepath.Join(mirror, "registry.terraform.io/hashicorp/aws")); err != nil || serr != nil {
		t.Skipf("############ SKIPPED: terraform validate/plan of the canary module: terraform or the AWS provider mirror (%s) is not on this machine. Nothing was validated. ############", mirror)
	}
	work := t.TempDir()
	mustWrite := func(path, s string) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	body, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(filepath.Join(work, "canary", File), string(body))
	mustWrite(filepath.Join(work, "cli.tfrc"), `provider_installation {
  filesystem_mirror {
    path    = "`+mirror+`"
    include = ["registry.terraform.io/hashicorp/aws"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/aws"]
  }
}
`)
	mustWrite(filepath.Join(work, "root", "main.tf.json"), `{
  "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": ">= 5.0"}}},
  "provider": {"aws": {"region": "us-east-1", "access_key": "AKIAIOSFODNN7EXAMPLE", "secret_key": "dummy",
    "skip_credentials_validation": true, "skip_requesting_account_id": true, "skip_metadata_api_check": true,
    "skip_region_validation": true}},
  "module": {"canary": {"source": "../canary", "target_url": "https://abc.lambda-url.us-east-1.on.aws/?instruments=50",
    "probe_name": "pricing-us-east-1", "target_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:pricing",
    "canary_zip": "../canary.zip", "alarm_sns_topic_arns": ["arn:aws:sns:us-east-1:123456789012:oncall"]}}
}
`)
	// plan reads the zip's hash: an empty zip stands in offline.
	mustWrite(filepath.Join(work, "canary.zip"), "PK\x05\x06"+strings.Repeat("\x00", 18))
	run := func(args ...string) string {
		cmd := exec.Command(tf, args...)
		cmd.Dir = filepath.Join(work, "root")
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(work, "cli.tfrc"), "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
			"TF_DATA_DIR="+filepath.Join(work, "tfdata"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("terraform %s: %v\n%s", args[0], err, out)
		}
		return string(out)
	}
	run("init", "-backend=false", "-input=false", "-no-color")
	if out := run("validate", "-no-color"); !strings.Contains(out, "Success") {
		t.Fatalf("validate: %s", out)
	}
	cmd := exec.Command(tf, "plan", "-input=false", "-refresh=false", "-lock=false", "-no-color")
	cmd.Dir = filepath.Join(work, "root")
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(work, "cli.tfrc"), "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
		"TF_DATA_DIR="+filepath.Join(work, "tfdata"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("terraform plan (dummy credentials, offline): %v\n%s", err, lastLines(string(out), 10))
	}
	// Two roles, their policies and the logs attachment, the log group, the
	// function, the schedule and the three alarms.
	plan := regexp.MustCompile(`Plan: .*`).FindString(string(out))
	t.Logf("terraform plan (dummy credentials, offline): %s", plan)
	if !strings.Contains(plan, "11 to add") {
		t.Errorf("plan: %s", plan)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
