package ecs_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/awstest"
	"github.com/weirstream/weir/infra/launcher"
	"github.com/weirstream/weir/infra/launcher/ecs"
)

func TestStartedByFitsECSLimits(t *testing.T) {
	allowed := regexp.MustCompile(`^[A-Za-z0-9_/-]{1,36}$`)
	long := job.ID(strings.Repeat("a", 128))
	cases := map[job.ID]string{
		"clicks":                          "weir/clicks",
		"a-31-character-job-id-fits-here": "weir/a-31-character-job-id-fits-here",
	}
	for id, want := range cases {
		if got := ecs.StartedBy(id); got != want {
			t.Errorf("StartedBy(%q) = %q, want %q", id, got, want)
		}
	}
	seen := map[string]job.ID{}
	for _, id := range []job.ID{"clicks", "clicks.v2", "a-32-character-job-id-is-too-lon", long, long[:127], "x"} {
		got := ecs.StartedBy(id)
		if !allowed.MatchString(got) {
			t.Errorf("StartedBy(%q) = %q: not 1-36 of A-Z a-z 0-9 _ / -", id, got)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("jobs %q and %q share StartedBy %q", id, other, got)
		}
		seen[got] = id
		if ecs.StartedBy(id) != got {
			t.Errorf("StartedBy(%q) is not stable", id)
		}
	}
}

func TestOptionsValidateNamesEveryProblem(t *testing.T) {
	err := ecs.Options{
		Subnets:        []string{"10.0.0.0/24"},
		SecurityGroups: []string{"default"},
		Env:            map[string]string{launcher.EnvJobID: "x"},
	}.Validate()
	if err == nil {
		t.Fatal("Validate accepted empty options")
	}
	for _, want := range []string{"cluster", "task definition", `subnet "10.0.0.0/24"`, `security group "default"`, launcher.EnvJobID} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if err := (ecs.Options{Cluster: "c", TaskDefinition: "td"}).Validate(); err == nil || !strings.Contains(err.Error(), "subnets") {
		t.Errorf("no subnets: %v", err)
	}
	if _, err := ecs.New(nil, ecs.Options{Cluster: "c", TaskDefinition: "td", Subnets: []string{"subnet-1"}}); err == nil {
		t.Error("New without a client succeeded")
	}
}

// world is a VPC, a cluster and a task definition on the emulator.
type world struct {
	api     *awsecs.Client
	opts    ecs.Options
	cluster string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	cfg := awstest.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ec := ec2.NewFromConfig(cfg)
	vpc, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.20.0.0/16")})
	if err != nil {
		t.Fatalf("create VPC: %v", err)
	}
	vpcID := vpc.Vpc.VpcId
	// moto needs DNS host names on to give an awsvpc task its private DNS
	// name.
	if _, err := ec.ModifyVpcAttribute(ctx, &ec2.ModifyVpcAttributeInput{VpcId: vpcID, EnableDnsHostnames: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}}); err != nil {
		t.Fatalf("enable DNS host names: %v", err)
	}
	subnet, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpcID, CidrBlock: aws.String("10.20.1.0/24")})
	if err != nil {
		t.Fatalf("create subnet: %v", err)
	}
	sg, err := ec.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		VpcId: vpcID, GroupName: aws.String(awstest.Name(t, "workers")), Description: aws.String("weir workers"),
	})
	if err != nil {
		t.Fatalf("create security group: %v", err)
	}

	api := awsecs.NewFromConfig(cfg)
	cluster := awstest.Name(t, "cluster")
	if _, err := api.CreateCluster(ctx, &awsecs.CreateClusterInput{ClusterName: &cluster}); err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	family := awstest.Name(t, "worker")
	td, err := api.RegisterTaskDefinition(ctx, &awsecs.RegisterTaskDefinitionInput{
		Family:                  &family,
		RequiresCompatibilities: []types.Compatibility{types.CompatibilityFargate},
		NetworkMode:             types.NetworkModeAwsvpc,
		Cpu:                     aws.String("256"),
		Memory:                  aws.String("512"),
		ContainerDefinitions: []types.ContainerDefinition{{
			Name: aws.String("worker"), Image: aws.String("weir/simworker:latest"), Essential: aws.Bool(true),
			// moto sums the containers' own sizes when it places a task.
			Cpu: 256, Memory: aws.Int32(512),
		}},
	})
	if err != nil {
		t.Fatalf("register task definition: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = api.DeregisterTaskDefinition(ctx, &awsecs.DeregisterTaskDefinitionInput{TaskDefinition: td.TaskDefinition.TaskDefinitionArn})
		_, _ = api.DeleteCluster(ctx, &awsecs.DeleteClusterInput{Cluster: &cluster})
		_, _ = ec.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId})
		_, _ = ec.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: subnet.Subnet.SubnetId})
		_, _ = ec.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: vpcID})
	})
	return &world{
		api:     api,
		cluster: cluster,
		opts: ecs.Options{
			Cluster:        cluster,
			TaskDefinition: family,
			Subnets:        []string{aws.ToString(subnet.Subnet.SubnetId)},
			SecurityGroups: []string{aws.ToString(sg.GroupId)},
			Env:            map[string]string{launcher.EnvWorkerQueueURL: "http://queue", launcher.EnvWorkerUrgentQueueURL: "http://urgent", launcher.EnvJobsTable: "jobs"},
		},
	}
}

func (w *world) launcher(t *testing.T) *ecs.Launcher {
	t.Helper()
	l, err := ecs.New(w.api, w.opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// runs returns how many tasks of the job each run has, by worker.
func runs(t *testing.T, l *ecs.Launcher, id job.ID) map[int64][]string {
	t.Helper()
	tasks, err := l.Tasks(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]string{}
	for _, task := range tasks {
		out[task.RunID] = append(out[task.RunID], task.WorkerID)
	}
	for _, ws := range out {
		slices.Sort(ws)
	}
	return out
}

func request(id job.ID, run int64, workers ...string) fleet.Request {
	return fleet.Request{JobID: id, RunID: run, Workers: workers, SlotsPerWorker: 4, Program: "s3://bucket/pipeline.wasm"}
}

func TestStartRunsOneTaskPerWorkerWithItsIdentity(t *testing.T) {
	w := newWorld(t)
	l := w.launcher(t)
	ctx := t.Context()
	if err := l.Start(ctx, request("clicks", 1, "w-0", "w-1")); err != nil {
		t.Fatal(err)
	}
	tasks, err := l.Tasks(ctx, "clicks")
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 2 {
		t.Fatalf("%d tasks after Start, want 2", len(tasks))
	}
	d, err := w.api.DescribeTasks(ctx, &awsecs.DescribeTasksInput{Cluster: &w.cluster, Tasks: []string{tasks[0].ARN, tasks[1].ARN}, Include: []types.TaskField{types.TaskFieldTags}})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range d.Tasks {
		if got := aws.ToString(task.StartedBy); got != "weir/clicks" {
			t.Errorf("startedBy %q, want weir/clicks", got)
		}
		if task.LaunchType != types.LaunchTypeFargate {
			t.Errorf("launch type %q, want FARGATE", task.LaunchType)
		}
		tags := map[string]string{}
		for _, tag := range task.Tags {
			tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
		}
		env := map[string]string{}
		for _, o := range task.Overrides.ContainerOverrides {
			if aws.ToString(o.Name) != "worker" {
				t.Errorf("override of container %q, want worker", aws.ToString(o.Name))
			}
			for _, kv := range o.Environment {
				env[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
			}
		}
		want := map[string]string{
			launcher.EnvJobID: "clicks", launcher.EnvRunID: "1", launcher.EnvWorkerID: tags[ecs.TagWorker],
			launcher.EnvSlots: "4", launcher.EnvProgram: "s3://bucket/pipeline.wasm",
			launcher.EnvWorkerQueueURL: "http://queue", launcher.EnvWorkerUrgentQueueURL: "http://urgent", launcher.EnvJobsTable: "jobs",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("task of worker %s: %s=%q, want %q", tags[ecs.TagWorker], k, env[k], v)
			}
		}
		if tags[ecs.TagJob] != "clicks" || tags[ecs.TagRun] != "1" {
			t.Errorf("tags %v, want job clicks and run 1", tags)
		}
	}
}

func TestStartIsIdempotentAcrossLaunchers(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	req := request("clicks", 1, "w-0", "w-1")
	first := w.launcher(t)
	if err := first.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	// A retry, and a controller that took over, start nothing more.
	if err := first.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	next := w.launcher(t)
	if err := next.Start(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := runs(t, next, "clicks"); len(got) != 1 || !slices.Equal(got[1], []string{"w-0", "w-1"}) {
		t.Fatalf("tasks by run after three Starts: %v, want one task each for w-0 and w-1 of run 1", got)
	}

	// A wider request launches only the new worker.
	wider := request("clicks", 1, "w-0", "w-1", "w-2")
	if err := next.Start(ctx, wider); err != nil {
		t.Fatal(err)
	}
	if got := runs(t, next, "clicks"); !slices.Equal(got[1], []string{"w-0", "w-1", "w-2"}) {
		t.Fatalf("tasks of run 1: %v, want w-0, w-1 and w-2", got[1])
	}
}

func TestStopEndsEveryRunUpToTheBound(t *testing.T) {
	w := newWorld(t)
	l := w.launcher(t)
	ctx := t.Context()
	long := job.ID("a.job.id.too.long.for.startedBy." + strings.Repeat("x", 40))
	for _, req := range []fleet.Request{
		request("clicks", 1, "w-0"), request("clicks", 2, "w-0", "w-1"), request("clicks", 3, "w-0"),
		request("views", 1, "w-0"), request(long, 1, "w-0"),
	} {
		if err := l.Start(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	// A controller that took over finds older runs' tasks.
	next := w.launcher(t)
	if err := next.Stop(ctx, "clicks", 2); err != nil {
		t.Fatal(err)
	}
	if got := runs(t, next, "clicks"); len(got) != 1 || len(got[3]) != 1 {
		t.Fatalf("clicks after Stop(2): %v, want only run 3", got)
	}
	if got := runs(t, next, "views"); len(got[1]) != 1 {
		t.Fatalf("views after stopping clicks: %v, want its run 1 untouched", got)
	}
	if got := runs(t, next, long); len(got[1]) != 1 {
		t.Fatalf("%s: %v, want its run 1", long, got)
	}
	for _, id := range []job.ID{"clicks", "views", long} {
		if err := next.Stop(ctx, id, 0); err != nil {
			t.Fatal(err)
		}
		if got := runs(t, next, id); len(got) != 0 {
			t.Fatalf("%s after Stop(0): %v, want nothing", id, got)
		}
	}
	// The stopped tasks are STOPPED in ECS, not just forgotten.
	list, err := w.api.ListTasks(ctx, &awsecs.ListTasksInput{Cluster: &w.cluster, DesiredStatus: types.DesiredStatusStopped})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.TaskArns) != 6 {
		t.Fatalf("%d stopped tasks, want 6", len(list.TaskArns))
	}
	// Stopping again is harmless.
	if err := next.Stop(ctx, "clicks", 0); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFindsAWrongClusterTaskDefinitionOrContainer(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	if err := w.launcher(t).Check(ctx); err != nil {
		t.Fatalf("Check of a good set-up: %v", err)
	}
	bad := w.opts
	bad.Cluster = "no-such-cluster-" + w.cluster
	bad.Container = "app"
	l, err := ecs.New(w.api, bad)
	if err != nil {
		t.Fatal(err)
	}
	err = l.Check(ctx)
	if err == nil {
		t.Fatal("Check passed a missing cluster and container")
	}
	for _, want := range []string{"cluster no-such-cluster-", `no container "app" (it has worker)`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	bad = w.opts
	bad.TaskDefinition = "no-such-family"
	if l, err = ecs.New(w.api, bad); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(ctx); err == nil || !strings.Contains(err.Error(), "no-such-family cannot be read") {
		t.Errorf("Check of a missing task definition: %v", err)
	}
}

func TestRequestsAreCheckedBeforeAnyCall(t *testing.T) {
	l, err := ecs.New(failingAPI{t}, ecs.Options{Cluster: "c", TaskDefinition: "td", Subnets: []string{"subnet-1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Start(ctx, request("clicks", 0, "w-0")); err == nil {
		t.Error("Start of run 0 succeeded")
	}
	if err := l.Stop(ctx, "bad/id", 0); err == nil {
		t.Error("Stop of an invalid job id succeeded")
	}
}

// failingAPI fails the test on any call.
type failingAPI struct{ t *testing.T }

func (f failingAPI) RunTask(context.Context, *awsecs.RunTaskInput, ...func(*awsecs.Options)) (*awsecs.RunTaskOutput, error) {
	f.t.Error("RunTask called")
	return nil, context.Canceled
}

func (f failingAPI) ListTasks(context.Context, *awsecs.ListTasksInput, ...func(*awsecs.Options)) (*awsecs.ListTasksOutput, error) {
	f.t.Error("ListTasks called")
	return nil, context.Canceled
}

func (f failingAPI) DescribeTasks(context.Context, *awsecs.DescribeTasksInput, ...func(*awsecs.Options)) (*awsecs.DescribeTasksOutput, error) {
	f.t.Error("DescribeTasks called")
	return nil, context.Canceled
}

func (f failingAPI) DescribeClusters(context.Context, *awsecs.DescribeClustersInput, ...func(*awsecs.Options)) (*awsecs.DescribeClustersOutput, error) {
	f.t.Error("DescribeClusters called")
	return nil, context.Canceled
}

func (f failingAPI) DescribeTaskDefinition(context.Context, *awsecs.DescribeTaskDefinitionInput, ...func(*awsecs.Options)) (*awsecs.DescribeTaskDefinitionOutput, error) {
	f.t.Error("DescribeTaskDefinition called")
	return nil, context.Canceled
}

func (f failingAPI) StopTask(context.Context, *awsecs.StopTaskInput, ...func(*awsecs.Options)) (*awsecs.StopTaskOutput, error) {
	f.t.Error("StopTask called")
	return nil, context.Canceled
}
