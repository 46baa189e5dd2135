// Package tfjson writes Terraform JSON configuration deterministically.
package tfjson

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Marshal renders v as indented JSON with sorted keys (maps) and no HTML
// escaping, ending in a newline: the form the generated files are committed in.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Literal escapes a string so Terraform's template syntax leaves it alone: in
// .tf.json every string is a template, and CloudWatch's own ${PROP(...)} labels
// must reach CloudWatch unchanged.
func Literal(s string) string {
	return strings.NewReplacer("${", "$${", "%{", "%%{").Replace(s)
}

// Providers is the terraform block every module carries.
func Providers() map[string]any {
	return map[string]any{"required_version": ">= 1.5", "required_providers": map[string]any{
		"aws": map[string]any{"source": "hashicorp/aws", "version": ">= 5.0"}}}
}

// Var declares a variable.
func Var(typ, description string, def any) map[string]any {
	v := map[string]any{"type": typ, "description": description}
	if def != nil {
		v["default"] = def
	}
	return v
}

// FunctionVars are the inputs every streamlens module takes: which function's
// metrics, in which namespace.
func FunctionVars(defaultNamespace string) map[string]any {
	return map[string]any{
		"function_name": Var("string", "Lambda function name (the FunctionName dimension)", nil),
		"namespace":     Var("string", "CloudWatch namespace of the streamlens metrics", defaultNamespace),
	}
}

// Merge copies the entries of every map into the first.
func Merge(dst map[string]any, more ...map[string]any) map[string]any {
	for _, m := range more {
		for k, v := range m {
			dst[k] = v
		}
	}
	return dst
}

// RunbookVars declares runbook_base_url: where the alarms' runbooks
// (docs/runbooks in the repository) are published.
func RunbookVars() map[string]any {
	return map[string]any{"runbook_base_url": Var("string",
		"URL of the published docs/runbooks folder; alarm descriptions link each alarm's page there (default: the repository path docs/runbooks)", "")}
}

// RunbookLocals resolves runbook_base_url to the base the links use.
func RunbookLocals() map[string]any {
	return map[string]any{"runbook": `${var.runbook_base_url != "" ? trimsuffix(var.runbook_base_url, "/") : "docs/runbooks"}`}
}

// Runbook is the sentence that ends an alarm description: the link to the
// alarm's runbook page, docs/runbooks/<page>.md.
func Runbook(page string) string { return "Runbook: ${local.runbook}/" + page + ".md" }
