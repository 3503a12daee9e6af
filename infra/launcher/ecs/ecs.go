// Package ecs is a fleet.Launcher that runs each worker as an Amazon ECS
// task on Fargate: one RunTask per worker, from a task definition and in a
// cluster given as settings, with the worker's identity as environment
// overrides of its container.
//
// Every task is started by the job (StartedBy, at most 36 characters, see
// StartedBy) and tagged with the job, the run and the worker. That is all
// the state there is: Start lists the job's tasks before it launches, so a
// retry or a controller that took over starts only what is missing, and
// Stop finds the tasks of every run up to the one it is given, whoever
// launched them.
package ecs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/weirstream/weir/core/fleet"
	"github.com/weirstream/weir/core/job"
	"github.com/weirstream/weir/infra/launcher"
)

// Tags on every task the launcher starts.
const (
	TagJob    = "weir:job"
	TagRun    = "weir:run"
	TagWorker = "weir:worker"
)

// DefaultContainer is the name of the worker's container in the task
// definition unless Options.Container says otherwise.
const DefaultContainer = "worker"

// describeBatch is the most tasks one DescribeTasks call takes.
const describeBatch = 100

// API is the part of the ECS client the launcher uses; *ecs.Client
// implements it.
type API interface {
	RunTask(ctx context.Context, in *awsecs.RunTaskInput, optFns ...func(*awsecs.Options)) (*awsecs.RunTaskOutput, error)
	ListTasks(ctx context.Context, in *awsecs.ListTasksInput, optFns ...func(*awsecs.Options)) (*awsecs.ListTasksOutput, error)
	DescribeTasks(ctx context.Context, in *awsecs.DescribeTasksInput, optFns ...func(*awsecs.Options)) (*awsecs.DescribeTasksOutput, error)
	StopTask(ctx context.Context, in *awsecs.StopTaskInput, optFns ...func(*awsecs.Options)) (*awsecs.StopTaskOutput, error)
	DescribeClusters(ctx context.Context, in *awsecs.DescribeClustersInput, optFns ...func(*awsecs.Options)) (*awsecs.DescribeClustersOutput, error)
	DescribeTaskDefinition(ctx context.Context, in *awsecs.DescribeTaskDefinitionInput, optFns ...func(*awsecs.Options)) (*awsecs.DescribeTaskDefinitionOutput, error)
}

var _ API = (*awsecs.Client)(nil)

// Options say where and how workers run. Cluster, TaskDefinition and
// Subnets are required.
type Options struct {
	// Cluster is the cluster's name or ARN.
	Cluster string
	// TaskDefinition is the worker's task definition: family,
	// family:revision or ARN. Its network mode must be awsvpc.
	TaskDefinition string
	// Container names the container that runs the worker, the one whose
	// environment is overridden. Default DefaultContainer.
	Container string
	// Subnets and SecurityGroups place the tasks (awsvpc). At least one
	// subnet; without security groups the VPC's default group applies.
	Subnets        []string
	SecurityGroups []string
	// AssignPublicIP gives each task a public address: needed in public
	// subnets without a NAT gateway, so that the task can reach ECR, SQS
	// and DynamoDB.
	AssignPublicIP bool
	// Env is added to the container's environment besides the worker's
	// identity, e.g. WEIR_WORKER_QUEUE_URL and WEIR_JOBS_TABLE of the
	// controller's stack, so that the workers talk to the same stack.
	Env map[string]string
	// Logger receives a line per launch and stop. Default slog.Default().
	Logger *slog.Logger
}

// Validate names every missing or unusable option.
func (o Options) Validate() error {
	var problems []string
	if o.Cluster == "" {
		problems = append(problems, "no cluster given")
	}
	if o.TaskDefinition == "" {
		problems = append(problems, "no task definition given")
	}
	if len(o.Subnets) == 0 {
		problems = append(problems, "no subnets given: Fargate tasks need at least one (awsvpc)")
	}
	for _, s := range o.Subnets {
		if !strings.HasPrefix(s, "subnet-") {
			problems = append(problems, fmt.Sprintf("subnet %q is not a subnet id (subnet-…)", s))
		}
	}
	for _, g := range o.SecurityGroups {
		if !strings.HasPrefix(g, "sg-") {
			problems = append(problems, fmt.Sprintf("security group %q is not a security group id (sg-…)", g))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.Env)) {
		if k == "" || isIdentity(k) {
			problems = append(problems, fmt.Sprintf("environment variable %q cannot be set: the launcher sets the worker's identity itself", k))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("ecs launcher: %s", strings.Join(problems, "; "))
	}
	return nil
}

func isIdentity(name string) bool {
	switch name {
	case launcher.EnvJobID, launcher.EnvRunID, launcher.EnvWorkerID, launcher.EnvSlots, launcher.EnvProgram:
		return true
	}
	return false
}

// Launcher runs workers as ECS tasks. It is safe for concurrent use and
// holds no state of its own.
type Launcher struct {
	api API
	o   Options
}

var _ fleet.Launcher = (*Launcher)(nil)

// New returns a launcher that calls ECS through api (an *ecs.Client from
// the caller's AWS configuration).
func New(api API, o Options) (*Launcher, error) {
	if api == nil {
		return nil, errors.New("ecs launcher: no ECS client given")
	}
	if o.Container == "" {
		o.Container = DefaultContainer
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.Subnets = slices.Clone(o.Subnets)
	o.SecurityGroups = slices.Clone(o.SecurityGroups)
	o.Env = maps.Clone(o.Env)
	return &Launcher{api: api, o: o}, nil
}

// Check verifies, with one DescribeClusters and one
// DescribeTaskDefinition, that the cluster is active and that the task
// definition can run on Fargate with awsvpc and has the worker's
// container, so that a wrong setting shows at start-up rather than at a
// job's first launch.
func (l *Launcher) Check(ctx context.Context) error {
	var problems []string
	cl, err := l.api.DescribeClusters(ctx, &awsecs.DescribeClustersInput{Clusters: []string{l.o.Cluster}})
	switch {
	case err != nil:
		return fmt.Errorf("ecs launcher: describe cluster %s: %w", l.o.Cluster, err)
	case len(cl.Clusters) == 0:
		problems = append(problems, fmt.Sprintf("cluster %s does not exist", l.o.Cluster))
	case aws.ToString(cl.Clusters[0].Status) != "ACTIVE":
		problems = append(problems, fmt.Sprintf("cluster %s is %s, not ACTIVE", l.o.Cluster, aws.ToString(cl.Clusters[0].Status)))
	}
	td, err := l.api.DescribeTaskDefinition(ctx, &awsecs.DescribeTaskDefinitionInput{TaskDefinition: &l.o.TaskDefinition})
	if err != nil {
		problems = append(problems, fmt.Sprintf("task definition %s cannot be read: %v", l.o.TaskDefinition, err))
	} else if d := td.TaskDefinition; d != nil {
		if d.NetworkMode != types.NetworkModeAwsvpc {
			problems = append(problems, fmt.Sprintf("task definition %s has network mode %q; Fargate needs awsvpc", l.o.TaskDefinition, d.NetworkMode))
		}
		if !slices.Contains(d.RequiresCompatibilities, types.CompatibilityFargate) && !slices.Contains(d.Compatibilities, types.CompatibilityFargate) {
			problems = append(problems, fmt.Sprintf("task definition %s is not compatible with FARGATE", l.o.TaskDefinition))
		}
		var names []string
		for _, c := range d.ContainerDefinitions {
			names = append(names, aws.ToString(c.Name))
		}
		if !slices.Contains(names, l.o.Container) {
			problems = append(problems, fmt.Sprintf("task definition %s has no container %q (it has %s): name the worker's container", l.o.TaskDefinition, l.o.Container, strings.Join(names, ", ")))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("ecs launcher: %s", strings.Join(problems, "; "))
	}
	return nil
}

// startedByMax is ECS's limit on StartedBy as ListTasks filters it.
const startedByMax = 36

var plainStartedBy = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// StartedBy is the value the job's tasks carry in StartedBy. ECS allows 36
// letters, digits, '-', '_' and '/': a job id that fits after "weir/" is
// used as it is, any other is replaced by "weir-" and a hash of it. The
// two forms cannot collide, and the weir:job tag tells apart the jobs of
// a (vanishingly unlikely) shared hash.
func StartedBy(id job.ID) string {
	if s := "weir/" + string(id); len(s) <= startedByMax && plainStartedBy.MatchString(string(id)) {
		return s
	}
	sum := sha256.Sum256([]byte(id))
	return ("weir-" + hex.EncodeToString(sum[:]))[:startedByMax]
}

// clientToken makes RunTask idempotent for one worker of one run: a retry
// whose first attempt did launch (its answer lost) gets the same task back.
func clientToken(req fleet.Request, workerID string) string {
	sum := sha256.Sum256([]byte(string(req.JobID) + "\x00" + strconv.FormatInt(req.RunID, 10) + "\x00" + workerID))
	return hex.EncodeToString(sum[:])
}

// Task is one of a job's tasks as the launcher sees it.
type Task struct {
	ARN      string
	RunID    int64
	WorkerID string
	// LastStatus is ECS's view, such as PROVISIONING, PENDING or RUNNING.
	LastStatus string
}

// Tasks returns the job's tasks whose desired status is RUNNING (being
// started or running), of every run.
func (l *Launcher) Tasks(ctx context.Context, id job.ID) ([]Task, error) {
	var arns []string
	p := awsecs.NewListTasksPaginator(l.api, &awsecs.ListTasksInput{
		Cluster:       &l.o.Cluster,
		StartedBy:     aws.String(StartedBy(id)),
		DesiredStatus: types.DesiredStatusRunning,
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ecs launcher: list the tasks of job %s in cluster %s: %w", id, l.o.Cluster, err)
		}
		arns = append(arns, page.TaskArns...)
	}
	var out []Task
	for chunk := range slices.Chunk(arns, describeBatch) {
		d, err := l.api.DescribeTasks(ctx, &awsecs.DescribeTasksInput{
			Cluster: &l.o.Cluster,
			Tasks:   chunk,
			Include: []types.TaskField{types.TaskFieldTags},
		})
		if err != nil {
			return nil, fmt.Errorf("ecs launcher: describe the tasks of job %s: %w", id, err)
		}
		for _, t := range d.Tasks {
			tags := map[string]string{}
			for _, tag := range t.Tags {
				tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
			}
			run, err := strconv.ParseInt(tags[TagRun], 10, 64)
			if tags[TagJob] != string(id) || err != nil || run < 1 {
				continue // another job's under a shared hash, or not weir's
			}
			out = append(out, Task{ARN: aws.ToString(t.TaskArn), RunID: run, WorkerID: tags[TagWorker], LastStatus: aws.ToString(t.LastStatus)})
		}
	}
	return out, nil
}

// Start launches a task for every worker of the run that has none being
// started or running. Each RunTask carries a client token derived from the
// job, run and worker, so a retry whose first answer was lost gets the
// same task back from ECS instead of a second one; the price is that
// within ECS's idempotency window a worker whose task ended is not
// launched again in the same run (the controller replaces lost workers
// with a new run anyway).
func (l *Launcher) Start(ctx context.Context, req fleet.Request) error {
	if err := launcher.CheckRequest(req); err != nil {
		return fmt.Errorf("ecs launcher: %w", err)
	}
	tasks, err := l.Tasks(ctx, req.JobID)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, t := range tasks {
		if t.RunID == req.RunID {
			have[t.WorkerID] = true
		}
	}
	started := 0
	for _, w := range req.Workers {
		if have[w] {
			continue
		}
		if err := l.run(ctx, req, w); err != nil {
			return err
		}
		started++
	}
	if started > 0 {
		l.o.Logger.Info("worker tasks started", "job", string(req.JobID), "run_id", req.RunID, "started", started, "workers", len(req.Workers), "cluster", l.o.Cluster)
	}
	return nil
}

func (l *Launcher) run(ctx context.Context, req fleet.Request, workerID string) error {
	env := make([]types.KeyValuePair, 0, len(l.o.Env)+5)
	for _, k := range slices.Sorted(maps.Keys(l.o.Env)) {
		env = append(env, types.KeyValuePair{Name: aws.String(k), Value: aws.String(l.o.Env[k])})
	}
	for _, kv := range launcher.WorkerEnv(req, workerID) {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, types.KeyValuePair{Name: aws.String(k), Value: aws.String(v)})
	}
	assign := types.AssignPublicIpDisabled
	if l.o.AssignPublicIP {
		assign = types.AssignPublicIpEnabled
	}
	out, err := l.api.RunTask(ctx, &awsecs.RunTaskInput{
		Cluster:        &l.o.Cluster,
		TaskDefinition: &l.o.TaskDefinition,
		LaunchType:     types.LaunchTypeFargate,
		Count:          aws.Int32(1),
		ClientToken:    aws.String(clientToken(req, workerID)),
		StartedBy:      aws.String(StartedBy(req.JobID)),
		NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
			Subnets:        l.o.Subnets,
			SecurityGroups: l.o.SecurityGroups,
			AssignPublicIp: assign,
		}},
		Overrides: &types.TaskOverride{ContainerOverrides: []types.ContainerOverride{{
			Name:        &l.o.Container,
			Environment: env,
		}}},
		Tags: []types.Tag{
			{Key: aws.String(TagJob), Value: aws.String(string(req.JobID))},
			{Key: aws.String(TagRun), Value: aws.String(strconv.FormatInt(req.RunID, 10))},
			{Key: aws.String(TagWorker), Value: aws.String(workerID)},
		},
	})
	if err != nil {
		return fmt.Errorf("ecs launcher: run the task of worker %s of job %s run %d (task definition %s, cluster %s): %w",
			workerID, req.JobID, req.RunID, l.o.TaskDefinition, l.o.Cluster, err)
	}
	if len(out.Failures) > 0 || len(out.Tasks) == 0 {
		var reasons []string
		for _, f := range out.Failures {
			reasons = append(reasons, aws.ToString(f.Reason)+" "+aws.ToString(f.Detail))
		}
		return fmt.Errorf("ecs launcher: ECS did not place the task of worker %s of job %s run %d: %s",
			workerID, req.JobID, req.RunID, strings.Join(reasons, "; "))
	}
	return nil
}

// Stop stops the job's tasks of every run up to runID (every run when
// runID is 0). Tasks already stopping are not listed and not stopped
// again.
func (l *Launcher) Stop(ctx context.Context, id job.ID, runID int64) error {
	if err := launcher.CheckStop(id, runID); err != nil {
		return fmt.Errorf("ecs launcher: %w", err)
	}
	tasks, err := l.Tasks(ctx, id)
	if err != nil {
		return err
	}
	stopped := 0
	var errs []error
	for _, t := range tasks {
		if runID != 0 && t.RunID > runID {
			continue
		}
		_, err := l.api.StopTask(ctx, &awsecs.StopTaskInput{
			Cluster: &l.o.Cluster,
			Task:    aws.String(t.ARN),
			Reason:  aws.String(fmt.Sprintf("weir: run %d of job %s is over", t.RunID, id)),
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("stop task %s (worker %s, run %d): %w", t.ARN, t.WorkerID, t.RunID, err))
			continue
		}
		stopped++
	}
	if stopped > 0 {
		l.o.Logger.Info("worker tasks stopped", "job", string(id), "up_to_run", runID, "stopped", stopped, "cluster", l.o.Cluster)
	}
	if len(errs) > 0 {
		return fmt.Errorf("ecs launcher: job %s: %w", id, errors.Join(errs...))
	}
	return nil
}
