// Package localstack holds the embedded emulator's start script and, for
// people with Docker, LocalStack's compose file and ready hook. Docker is
// not available where weir is built and tested, so these tests check the
// compose file and the hook statically against what the embedded set-up
// does (scripts/run.sh, template.yaml, the Makefile), and run the hook
// itself, with its container paths mapped to a temporary directory, against
// the embedded emulator.
package localstack

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// shellDefault finds `NAME="${VAR:-default}"` (or unquoted) in a script and
// returns the default.
func shellDefault(t *testing.T, script, variable string) string {
	t.Helper()
	m := regexp.MustCompile(`\$\{` + variable + `:-([^}]*)\}`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no ${%s:-…} default found", variable)
	}
	return m[1]
}

// templateServices is the set of LocalStack services the resources
// weir-resources creates from template.yaml need.
func templateServices(t *testing.T) []string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(read(t, "../template.yaml")), &doc); err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	service := map[string]string{
		"AWS::DynamoDB::Table":          "dynamodb",
		"AWS::SQS::Queue":               "sqs",
		"AWS::Scheduler::ScheduleGroup": "scheduler",
	}
	var out []string
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "Resources" {
			continue
		}
		res := root.Content[i+1]
		for j := 1; j < len(res.Content); j += 2 {
			body := res.Content[j]
			for k := 0; k+1 < len(body.Content); k += 2 {
				if body.Content[k].Value == "Type" {
					if s, ok := service[body.Content[k+1].Value]; ok && !slices.Contains(out, s) {
						out = append(out, s)
					}
				}
			}
		}
	}
	if len(out) != len(service) {
		t.Fatalf("template.yaml declares resources of %v only; the test expects tables, queues and a schedule group", out)
	}
	return out
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	if err := yaml.Unmarshal([]byte(read(t, "compose.yaml")), &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if _, ok := c.Services["localstack"]; !ok {
		t.Fatalf("compose.yaml has no localstack service: %v", c.Services)
	}
	return c
}

// mounts maps each volume's container path to its host path (relative to
// localstack/).
func mounts(vols []string) map[string]string {
	out := map[string]string{}
	for _, v := range vols {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			out[parts[1]] = parts[0]
		}
	}
	return out
}

func TestComposeHonoursTheDocumentedSetUp(t *testing.T) {
	svc := loadCompose(t).Services["localstack"]
	run := read(t, "../scripts/run.sh")
	emulator := read(t, "emulator.sh")
	docs := read(t, "../README.md") + read(t, "../docs/operations.md")

	if img := svc.Image; !strings.HasPrefix(img, "localstack/localstack:") || strings.HasSuffix(img, ":latest") {
		t.Errorf("image %q: pin a LocalStack version", img)
	}

	// One port, published on loopback at the embedded emulator's port
	// variable and default, so one AWS_ENDPOINT_URL serves both.
	port := shellDefault(t, emulator, "EMULATOR_PORT")
	if want := "127.0.0.1:${EMULATOR_PORT:-" + port + "}:4566"; len(svc.Ports) != 1 || svc.Ports[0] != want {
		t.Errorf("ports %v, want [%s]", svc.Ports, want)
	}
	if got := svc.Environment["WEIR_HOST_PORT"]; got != "${EMULATOR_PORT:-"+port+"}" {
		t.Errorf("WEIR_HOST_PORT = %q: the hook must name the published port", got)
	}
	// The stack make run creates is the one the hook creates.
	if want := "${WEIR_STACK:-" + shellDefault(t, run, "WEIR_STACK") + "}"; svc.Environment["WEIR_STACK"] != want {
		t.Errorf("WEIR_STACK = %q, want %q (scripts/run.sh's default)", svc.Environment["WEIR_STACK"], want)
	}
	// Every ${VAR} the file reads is one the docs tell people about.
	for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)`).FindAllStringSubmatch(read(t, "compose.yaml"), -1) {
		if !strings.Contains(docs, m[1]) {
			t.Errorf("compose.yaml reads %s, which README.md and docs/operations.md never mention", m[1])
		}
	}
	if !strings.Contains(docs, "AWS_ENDPOINT_URL=http://127.0.0.1:"+port+" make run") {
		t.Errorf("the docs do not say how to run weir on LocalStack at port %s", port)
	}

	// LocalStack runs every service the template's local resources need.
	services := strings.Split(svc.Environment["SERVICES"], ",")
	for _, s := range templateServices(t) {
		if !slices.Contains(services, s) {
			t.Errorf("SERVICES %v lacks %s, which template.yaml's resources need", services, s)
		}
	}

	// The mounts: the hooks, the same template, the weir-resources the
	// Makefile builds for Linux, and an output directory git ignores.
	m := mounts(svc.Volumes)
	want := map[string]string{
		"/etc/localstack/init/ready.d": "./ready.d",
		"/opt/weir/template.yaml":      "../template.yaml",
		"/opt/weir/weir-resources":     "../bin/linux/weir-resources",
		"/opt/weir/out":                "../.localstack",
	}
	for in, host := range want {
		if m[in] != host {
			t.Errorf("volume for %s is %q, want %q", in, m[in], host)
		}
	}
	for _, p := range []string{"ready.d", "../template.yaml"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("mounted path %s: %v", p, err)
		}
	}
	makefile := read(t, "../Makefile")
	if !strings.Contains(makefile, "-o bin/linux/weir-resources ./cmd/weir-resources") || !strings.Contains(makefile, "mkdir -p bin/linux .localstack") {
		t.Error("make localstack-up does not build bin/linux/weir-resources and create .localstack, which compose.yaml mounts")
	}
	if !strings.Contains(makefile, "EMULATOR_PORT=$(EMULATOR_PORT) docker compose -f localstack/compose.yaml up") {
		t.Error("make localstack-up does not hand EMULATOR_PORT to compose")
	}
	if !strings.Contains(read(t, "../.gitignore"), "/.localstack/") {
		t.Error(".localstack (the hook's output) is not ignored by git")
	}
	if hc := strings.Join(svc.Healthcheck.Test, " "); !strings.Contains(hc, "/_localstack/init/ready") {
		t.Errorf("the health check %q does not wait for the ready hook", hc)
	}
}

// hook is the one ready hook.
func hook(t *testing.T) (path, text string) {
	t.Helper()
	files, err := filepath.Glob("ready.d/*")
	if err != nil || len(files) != 1 {
		t.Fatalf("ready.d holds %v, want one hook", files)
	}
	return files[0], read(t, files[0])
}

func TestReadyHookCreatesTheStackAsMakeRunDoes(t *testing.T) {
	path, text := hook(t)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable: LocalStack skips it", path)
	}
	if !strings.HasPrefix(text, "#!/bin/bash\n") || !strings.Contains(text, "set -euo pipefail") {
		t.Errorf("%s: want a bash script that stops at the first error", path)
	}
	if out, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
		t.Errorf("bash -n %s: %v\n%s", path, err, out)
	}

	// The same program, command and template make run uses, at the paths
	// compose.yaml mounts them.
	m := mounts(loadCompose(t).Services["localstack"].Volumes)
	call := regexp.MustCompile(`(\S+/weir-resources) create --stack "\$stack" --template (\S+)`).FindStringSubmatch(text)
	if call == nil {
		t.Fatalf("%s does not run weir-resources create --stack \"$stack\" --template …", path)
	}
	if call[1] != "/opt/weir/weir-resources" || m[call[1]] == "" {
		t.Errorf("the hook runs %s, which compose.yaml does not mount", call[1])
	}
	if call[2] != "/opt/weir/template.yaml" || m[call[2]] != "../template.yaml" {
		t.Errorf("the hook reads the template at %s, which is not the repository's template.yaml in compose.yaml", call[2])
	}
	if !regexp.MustCompile(`weir-resources" create --stack "\$stack" --template template\.yaml`).MatchString(read(t, "../scripts/run.sh")) {
		t.Error("scripts/run.sh no longer creates the stack with weir-resources create --stack \"$stack\" --template template.yaml: keep the hook in step")
	}
	if want := `stack="${WEIR_STACK:-` + shellDefault(t, read(t, "../scripts/run.sh"), "WEIR_STACK") + `}"`; !strings.Contains(text, want) {
		t.Errorf("the hook's stack is not %s", want)
	}
	if !strings.Contains(text, "out=/opt/weir/out") || m["/opt/weir/out"] == "" {
		t.Error("the hook does not write to the output directory compose.yaml mounts")
	}
	if !strings.Contains(text, "export AWS_ENDPOINT_URL=http://localhost:4566") {
		t.Error("the hook does not point the SDK at LocalStack inside the container (http://localhost:4566)")
	}
}

// TestReadyHookOnTheEmulator runs the hook with its container paths mapped
// to a temporary directory and its endpoint to the embedded emulator: it
// must create the stack and write an environment file whose variables name
// resources that exist, with queue URLs as seen from the host.
func TestReadyHookOnTheEmulator(t *testing.T) {
	if os.Getenv("WEIR_INTEGRATION") != "1" {
		t.Skip("integration test: run `make test`, or start the emulator and set WEIR_INTEGRATION=1 and AWS_ENDPOINT_URL")
	}
	endpoint := os.Getenv("AWS_ENDPOINT_URL")
	host := strings.TrimPrefix(endpoint, "http://")
	_, port, ok := strings.Cut(host, ":")
	if !ok {
		t.Fatalf("AWS_ENDPOINT_URL %q has no port", endpoint)
	}
	dir := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "weir-resources"), "./cmd/weir-resources")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Symlink(filepath.Join(root, "template.yaml"), filepath.Join(dir, "template.yaml")); err != nil {
		t.Fatal(err)
	}
	_, text := hook(t)
	text = strings.NewReplacer("/opt/weir/", dir+"/", "/opt/weir/out", dir+"/out", "localhost:4566", "localhost:"+port).Replace(text)
	script := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	stack := "weir-hook-" + strings.ReplaceAll(filepath.Base(dir), "_", "-")
	if len(stack) > 40 {
		stack = stack[:40]
	}
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), "WEIR_STACK="+stack, "WEIR_HOST_PORT="+port)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the hook failed: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		del := exec.Command(filepath.Join(dir, "weir-resources"), "delete", "--stack", stack, "--template", filepath.Join(root, "template.yaml"))
		if out, err := del.CombinedOutput(); err != nil {
			t.Logf("weir-resources delete: %v\n%s", err, out)
		}
	})
	if !strings.Contains(string(out), "stack "+stack+" created") {
		t.Errorf("the hook said:\n%s", out)
	}
	f, err := os.Open(filepath.Join(dir, "out", "weir.env"))
	if err != nil {
		t.Fatalf("the hook wrote no weir.env: %v", err)
	}
	defer func() { _ = f.Close() }()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), "="); ok {
			vars[name] = strings.Trim(value, "'")
		}
	}
	if !strings.HasPrefix(vars["WEIR_JOBS_TABLE"], stack) {
		t.Errorf("WEIR_JOBS_TABLE = %q, want a table of stack %s (weir.env: %v)", vars["WEIR_JOBS_TABLE"], stack, vars)
	}
	queues := 0
	for name, v := range vars {
		if strings.HasSuffix(name, "_QUEUE_URL") {
			queues++
			if !strings.HasPrefix(v, "http://127.0.0.1:"+port+"/") {
				t.Errorf("%s = %q: not rewritten to the host's view (http://127.0.0.1:%s)", name, v, port)
			}
		}
	}
	if queues == 0 {
		t.Errorf("weir.env names no queue: %v", vars)
	}
	// Run again, as LocalStack does after a restart with a persisted state:
	// creating is idempotent.
	if out, err := exec.Command("bash", script).CombinedOutput(); err != nil {
		t.Errorf("the hook failed on a second run: %v\n%s", err, out)
	}
}
